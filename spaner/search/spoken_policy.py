"""Whether a spoken query is searched by what was said (its transcript) or by its sound.

``auto`` (:mod:`spaner.search.spoken`) asks this module per clip. Whisper's no-speech
probability alone is a poor judge: it is high on short isolated words ("Two." .64) and low on
many animal sounds Whisper writes as words ("Yeah.", "I'm sorry."). So the decision reads what
Whisper wrote as well:

1. **Cleaning.** Sound annotations in brackets, parentheses, asterisks or music signs ("(frog
   croaking)", "[BLANK_AUDIO]", "♪") are removed. A transcript that is then nothing but one of
   Whisper's stock hallucinations (:data:`HALLUCINATIONS`: "Thanks for watching.", "you",
   "Bye." ...) or nothing but interjections (:data:`FILLERS`: "Oh.", "Mm.", "Yeah.", "Ha ha
   ha!") has no words to search for: the clip is searched by its audio.
2. **Vocabulary.** The share of the transcript's words (numbers as words) that are whole words of
   the text encoder's tokenizer (MiniLM's WordPiece entries that are not ``##`` pieces) or of the
   collection's vocabulary (:class:`~spaner.search.speech_bias.Vocabulary`): "Keto." and
   "AHHHHHHH!" are not words the text side knows; "Toucan." is, for a collection that has one.
3. **Confidence.** The mean token log-probability of the chosen beam hypothesis (CTranslate2's
   length-normalised beam score, ``transcribe``'s ``hypotheses[0][1]``).

The rule (:meth:`SpeechPolicy.decide`): the transcript is searched when it has words left after
cleaning, at least ``min_in_vocabulary`` of them are known, its confidence is at least
``min_confidence``, and the no-speech probability is below ``max_no_speech``. The thresholds
are chosen by balanced accuracy of speech vs non-speech on a validation set (Tux Paint's
spoken descriptions and isolated words spoken by eSpeak NG voices vs Tux Paint's sounds, half
the Tux Paint concepts and five of eight voices; the others held out): no-speech below .7,
confidence at least -2.75, every word known; see :data:`DEFAULT_POLICY` for the figures.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spaner.search.numbers import numerals_to_words

__all__ = [
    "HALLUCINATIONS",
    "FILLERS",
    "SpeechPolicy",
    "Decision",
    "DEFAULT_POLICY",
    "clean_transcript",
    "transcript_words",
    "text_vocabulary",
]

#: Whisper's stock outputs on silence, noise and music, learnt from subtitled videos; a
#: transcript that is only one of these (compared lowercase, without punctuation) is dropped
HALLUCINATIONS = frozenset(
    {
        "thanks for watching",
        "thank you for watching",
        "thanks for watching and see you next time",
        "please subscribe",
        "thank you",
        "thank you very much",
        "thanks",
        "you",
        "bye",
        "bye bye",
        "so",
        "the end",
    }
)
#: openings of Whisper's subtitle credits ("Subtitles by the Amara.org community")
_CREDITS = re.compile(r"^(?:subtitles|captions|transcription|translated|transcribed)\s+by\b")
#: interjections Whisper writes for laughs, cries, hums and animal noises: no words to search
FILLERS = frozenset((
    "ah", "aah", "ahh", "aha", "ha", "hah", "haha", "hahaha", "hee", "heh", "hey", "hm", "hmm",
    "huh", "mm", "mmm", "mhm", "oh", "ooh", "oo", "ooo", "ow", "oops", "uh", "uhh", "um", "umm",
    "wow", "whoa", "yay", "yeah", "yep", "ugh", "eh", "er", "erm", "shh", "psst",
))  # fmt: skip
_ANNOTATION = re.compile(r"\([^)]*\)?|\[[^\]]*\]?|\*[^*]*\*?|[♪♫♬]+[^♪♫♬]*[♪♫♬]*")
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*", re.UNICODE)


def clean_transcript(text: str | None) -> tuple[str | None, str | None]:
    """``(transcript, why dropped)``: the text without sound annotations, or ``None`` and why
    when nothing searchable is left (a hallucination, interjections only, no words)."""
    if not text or not text.strip():
        return None, "no transcript"
    kept = " ".join(_ANNOTATION.sub(" ", text).split())
    words = [w.lower() for w in _WORD.findall(kept)]
    if not words:
        return None, "no words" if kept == " ".join(text.split()) else "sound annotation only"
    said = " ".join(words)
    if said in HALLUCINATIONS or _CREDITS.match(said):
        return None, f"hallucination dropped ({text.strip()!r})"
    if all(_is_filler(w) for w in words):
        return None, f"interjections only ({text.strip()!r})"
    return kept, None


def _is_filler(word: str) -> bool:
    w = word.lower()
    # "Ahhhhh", "Hahaha", "Mmmm": drawn-out or repeated interjections
    squeezed = re.sub(r"(.)\1+", r"\1", w)
    return w in FILLERS or squeezed in FILLERS or squeezed in {"a", "ha", "he", "ho", "m"}


def transcript_words(text: str) -> list[str]:
    """The transcript's words, lowercase, numbers written as words ("2." -> ["two"])."""
    return [w.lower() for w in _WORD.findall(numerals_to_words(text))]


_vocab_cache: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
_vocab_lock = threading.Lock()


def text_vocabulary(text_encoder: Any) -> frozenset[str] | None:
    """The whole words of a text encoder's tokenizer (lowercase): WordPiece entries that are not
    ``##`` continuations, BPE entries ending a word (``</w>``); ``None`` when the encoder has no
    tokenizer with a vocabulary. Read from the loaded tokenizer, once per tokenizer."""
    tok = getattr(text_encoder, "tokenizer", None)
    if tok is None:
        tok = getattr(getattr(text_encoder, "backbone", None), "tokenizer", None)
    if tok is None:
        return None
    with _vocab_lock:
        try:
            return _vocab_cache[tok]
        except (KeyError, TypeError):
            pass
        get = getattr(tok, "get_vocab", None)
        entries = get() if callable(get) else getattr(tok, "encoder", None)
        if not isinstance(entries, dict) or not entries:
            return None
        bpe = any(k.endswith("</w>") for k in list(entries)[:5000])
        words = set()
        for k in entries:
            if bpe:
                if not k.endswith("</w>"):
                    continue
                k = k[:-4]
            k = k.lstrip("Ġ▁")
            if k.isalpha() and not k.startswith("##"):
                words.add(k.lower())
        found = frozenset(words)
        with contextlib.suppress(TypeError):  # not weak-referenceable: read again next time
            _vocab_cache[tok] = found
        return found


@dataclass(frozen=True)
class Decision:
    """The route for one clip and why."""

    transcript: str | None  # the cleaned transcript, None when dropped
    use_transcript: bool
    reason: str
    confidence: float | None = None
    in_vocabulary: float | None = None


@dataclass(frozen=True)
class SpeechPolicy:
    """``auto``'s rule (module doc); the defaults are the measured thresholds."""

    #: searched by audio at or above this no-speech probability, whatever the transcript
    max_no_speech: float = 0.7
    #: least mean token log-probability of the chosen hypothesis
    min_confidence: float = -2.75
    #: least share of the transcript's words the text encoder or the collection knows
    min_in_vocabulary: float = 1.0

    def decide(
        self,
        text: str | None,
        no_speech_prob: float | None,
        confidence: float | None,
        known: Iterable[frozenset[str] | set[str] | None] = (),
    ) -> Decision:
        """The route of one clip from Whisper's ``text``, no-speech probability and beam score;
        ``known``: word sets (the text encoder's, the collection's) a word may be in."""
        cleaned, dropped = clean_transcript(text)
        if cleaned is None:
            return Decision(None, False, dropped or "no transcript", confidence)
        sets = [s for s in known if s]
        words = transcript_words(cleaned)
        share = (
            sum(any(w in s for s in sets) for w in words) / len(words) if sets and words else None
        )
        facts = []
        if share is not None:
            facts.append(f"{share:.0%} in-vocabulary words")
        if confidence is not None:
            facts.append(f"confidence {confidence:.2f}")
        if no_speech_prob is not None:
            facts.append(f"no-speech {no_speech_prob:.2f}")
        detail = ", ".join(facts)
        if no_speech_prob is not None and no_speech_prob >= self.max_no_speech:
            return Decision(cleaned, False, f"no speech ({detail})", confidence, share)
        if share is not None and share < self.min_in_vocabulary:
            return Decision(cleaned, False, f"unknown words ({detail})", confidence, share)
        if confidence is not None and confidence < self.min_confidence:
            return Decision(cleaned, False, f"low confidence ({detail})", confidence, share)
        return Decision(cleaned, True, detail or "transcript", confidence, share)


#: the shipped thresholds. Chosen on a grid (no-speech ceiling .5-1, confidence floor -5 to -1,
#: known-word share .5/.75/1) by balanced accuracy of speech vs sound on the choice half (30
#: Tux Paint spoken descriptions and 85 eSpeak NG words from 5 voices vs 49 Tux Paint sounds),
#: ties to the strictest: .804 (no-speech < .2 alone: .697). Held out (35 descriptions, 51 words
#: from 3 other voices, 31 sounds): .892 (.764). Real people saying digits in English (Tux
#: Paint, 20 clips): transcript chosen 20 of 20 (17 before). The confidence floor barely bites
#: (anything from -5 to -2.75 ties): what separates speech from sound is the words.
DEFAULT_POLICY = SpeechPolicy()
