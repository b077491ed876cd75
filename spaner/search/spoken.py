"""Spoken queries: Whisper's transcript of a query clip beside the clip's own audio embedding.

A user who says "a frog" should find the frog's photo even when "frog" was never in the few-shot
set. The audio aligner only knows the concepts it was adapted to; the text encoder knows every
word. So a query clip is also transcribed (Whisper, the shipped tiny.en unless the model's audio
encoder is a Whisper of its own) and the transcript embedded as text. ``mode`` says what the
query vector is made of:

* ``audio``: the clip's audio embedding only (sounds: a croak, a bark);
* ``transcript``: the transcript's text embedding (falls back to audio with no transcript);
* ``both``: the mean of the two unit vectors;
* ``auto`` (default): ``transcript`` when what Whisper wrote reads as words the search knows,
  else ``audio``. The rule (:mod:`spaner.search.spoken_policy`) drops sound annotations, Whisper's
  stock hallucinations ("Thanks for watching.", "you") and bare interjections ("Oh.", "Mm."),
  then asks that every word be a whole word of the text encoder's tokenizer or of the
  collection's vocabulary, that the decoder's confidence (mean token log-probability) be at
  least a floor and the no-speech probability below a ceiling; thresholds chosen by balanced
  accuracy of Tux Paint's spoken descriptions and eSpeak NG words vs Tux Paint's sounds
  (README, "Spoken queries"). No-speech probability alone misjudged short words: "Two." has
  .64. ``auto`` transcribes only when the model's audio encoder is a Whisper (the ``offline``
  and ``digits`` profiles); ``transcript`` and ``both`` load the shipped tiny.en for any model.
  A dropped transcript (a hallucination) counts as none in every mode: the clip is searched by
  its audio. Each query says why in ``reason``.

Transcripts are decoded with a beam of ``BEAM_SIZE`` and, given a ``vocabulary`` (the store's
text items and concept names, see :mod:`spaner.search.speech_bias`) and ``bias``, snapped to the
collection's word Whisper finds nearly as likely as what it heard on its own: "Mark!" becomes
"A lark" when the collection has a lark. What Whisper heard is kept (``heard``) beside the
transcript used (``transcript``) and the entry it matched (``vocabulary_match``). Numbers in
a transcript not snapped to an entry are written the way the collection writes them (words
unless its texts use numerals, :mod:`spaner.search.numbers`): "2." is searched as "Two.".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from spaner.search.numbers import in_style, number_style
from spaner.search.speech_bias import BiasedTranscript, Vocabulary, bias_transcript
from spaner.search.spoken_policy import DEFAULT_POLICY, Decision, SpeechPolicy, text_vocabulary

__all__ = [
    "SPEECH_MODES",
    "NO_SPEECH_THRESHOLD",
    "BEAM_SIZE",
    "SpokenQuery",
    "spoken_queries",
    "transcriber_for",
    "no_transcriber_reason",
    "hear_clips",
    "speech_decider",
]

log = logging.getLogger(__name__)

SPEECH_MODES = ("auto", "audio", "transcript", "both")
#: Whisper's no-speech probability at or above which ``auto`` searches a clip by its audio
#: whatever it transcribed (:class:`~spaner.search.spoken_policy.SpeechPolicy`)
NO_SPEECH_THRESHOLD = DEFAULT_POLICY.max_no_speech
#: Whisper's beam (and n-best) for spoken queries: the n-best proposes the vocabulary
#: candidates (train+val spoken clips: the transcript is the label for .50 greedy, .52 beam-5
#: top, .80 biased)
BEAM_SIZE = 5
_shared: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass
class SpokenQuery:
    """One query clip: its unit query vector and what Whisper heard."""

    vector: np.ndarray
    transcript: str | None
    no_speech_prob: float | None
    used: str
    heard: str | None = None  # Whisper's own transcript, before biasing
    vocabulary_match: str | None = None  # the collection's entry the transcript was snapped to
    bias_margin: float | None = None
    reason: str | None = None  # why ``used`` was chosen ("no speech", "hallucination dropped")
    confidence: float | None = None  # Whisper's mean token log-probability of what it heard

    def to_dict(self) -> dict[str, Any]:
        return {
            "transcript": self.transcript,
            "heard": self.heard,
            "vocabulary_match": self.vocabulary_match,
            "bias_margin": self.bias_margin,
            "no_speech_prob": self.no_speech_prob,
            "used": self.used,
            "reason": self.reason,
            "confidence": self.confidence,
        }


def transcriber_for(spaner: Any, load_shared: bool = True) -> Any | None:
    """The model's own Whisper audio encoder, else (with ``load_shared``) the shipped Whisper
    tiny.en, loaded once per process; ``None`` when there is none."""
    enc = spaner.encoders.get("audio") if hasattr(spaner, "encoders") else None
    if enc is not None and callable(getattr(enc, "transcribe", None)):
        return enc
    if not load_shared:
        return None
    with _lock:
        if "whisper" not in _shared:
            try:
                from spaner.encoders import build_encoder

                _shared["whisper"] = build_encoder("whisper-tiny-en-audio")
            except Exception as exc:  # noqa: BLE001 - transcription is optional
                log.warning("spoken audio will not be transcribed: %s", exc)
                _shared["whisper"] = None
                _shared["why"] = str(exc)
        return _shared["whisper"]


def no_transcriber_reason(spaner: Any) -> str:
    """Why :func:`transcriber_for` found no transcriber for ``spaner`` (after it returned ``None``)."""
    enc = spaner.encoders.get("audio") if hasattr(spaner, "encoders") else None
    own = "the model has no audio encoder" if enc is None else f"{enc.name} is not a Whisper"
    why = _shared.get("why")
    return f"{own}, and the shipped Whisper tiny.en could not be loaded ({why})" if why else own


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def hear_clips(
    whisper: Any,
    waves: list[Any],
    decide: Any,
    vocab: Vocabulary | None,
    beam_size: int,
) -> list[tuple[dict[str, Any], Decision, BiasedTranscript | None]]:
    """Whisper's n-best of each clip (conditioned waveforms, :meth:`load`), the route ``decide``
    (:func:`speech_decider`) gives it, and, with a vocabulary, the transcript biased toward it
    (only for clips whose transcript is used). Ingest uses it too (:mod:`spaner.ingest.transcripts`)."""
    out: list[tuple[dict[str, Any], Decision, BiasedTranscript | None]] = []
    for i in range(0, len(waves), 8):  # 30-s encoder windows: bounded memory per step
        chunk = waves[i : i + 8]
        enc = whisper.encode_window(chunk)
        heard = whisper.transcribe(chunk, beam_size, beam_size, encoded=enc)
        for j, h in enumerate(heard):
            hyps = h.get("hypotheses") or [(h.get("text") or "", None)]
            d = decide(h.get("text"), h.get("no_speech_prob"), hyps[0][1])
            biased = None
            if vocab and d.use_transcript and d.transcript:
                texts = [d.transcript] + [t for t, _ in hyps[1:]]
                biased = bias_transcript(whisper, enc[j], texts, vocab)
            out.append((h, d, biased))
    return out


def spoken_queries(
    spaner: Any,
    sources: Sequence[Any],
    names: Sequence[str] | None = None,
    mode: str = "auto",
    threshold: float | None = None,
    vocabulary: Vocabulary | Sequence[str] | None = None,
    bias: bool = True,
    beam_size: int = BEAM_SIZE,
    policy: SpeechPolicy | None = None,
) -> list[SpokenQuery]:
    """Query vectors for audio clips (paths or bytes), with each clip's transcript.

    ``vocabulary``: the collection's words (a :class:`Vocabulary` or texts): words a transcript
    may use (``auto``), the numbers' style, and, with ``bias``, what transcripts are snapped to;
    without one the transcript is what Whisper heard (numbers as words). ``policy``: ``auto``'s
    rule (default :data:`~spaner.search.spoken_policy.DEFAULT_POLICY`); ``threshold`` overrides
    its no-speech ceiling."""
    if mode not in SPEECH_MODES:
        raise ValueError(f"speech mode must be one of {', '.join(SPEECH_MODES)}, got {mode!r}")
    policy = policy or DEFAULT_POLICY
    if threshold is not None:
        policy = replace(policy, max_no_speech=float(threshold))
    vocab = None
    if vocabulary is not None:
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary.build(vocabulary)
    style = number_style(vocab.entries) if vocab is not None else "words"
    audio = spaner.embed("audio", list(sources), names=names)
    heard: list[tuple[dict[str, Any], Decision, BiasedTranscript | None]] = []
    # ``auto`` transcribes with the model's own Whisper only; the others load one if needed
    whisper = transcriber_for(spaner, load_shared=mode != "auto") if mode != "audio" else None
    if whisper is not None:
        waves = [
            whisper.load(s, names[i] if names is not None else None) for i, s in enumerate(sources)
        ]
        heard = hear_clips(
            whisper,
            waves,
            speech_decider(spaner, mode, policy, vocab),
            vocab if bias else None,
            beam_size,
        )
    out = []
    for i, vec in enumerate(audio):
        if whisper is None:
            why = (
                "mode audio"
                if mode == "audio"
                else "no transcriber (the audio encoder is not a Whisper)"
            )
            out.append(SpokenQuery(_unit(vec), None, None, "audio", reason=why))
            continue
        h, d, biased = heard[i]
        said = h.get("text") or None
        if biased is not None and biased.entry is not None:
            text: str | None = biased.text
        else:
            text = in_style(d.transcript, style) if d.transcript else None
        used = mode if mode != "auto" else "transcript"
        if not d.use_transcript or not text:
            used = "audio"
        if used == "audio":
            q = vec
        else:
            t = spaner.embed("text", [text])[0]
            q = t if used == "transcript" else _unit(vec + t)
        match = biased.entry if biased is not None else None
        margin = biased.margin if biased is not None else None
        p = h.get("no_speech_prob")
        out.append(
            SpokenQuery(_unit(q), text, p, used, said, match, margin, d.reason, d.confidence)
        )
    return out


def speech_decider(
    spaner: Any, mode: str, policy: SpeechPolicy, vocab: Vocabulary | None = None
) -> Any:
    """The route of one clip from Whisper's output: ``auto`` by ``policy``; ``transcript`` and
    ``both`` whenever a transcript survives cleaning (hallucinations dropped)."""
    enc = spaner.encoders.get("text") if hasattr(spaner, "encoders") else None
    known = (text_vocabulary(enc) if enc is not None else None, _collection_words(vocab))

    def decide(text: str | None, no_speech: float | None, confidence: float | None) -> Decision:
        d = policy.decide(text, no_speech, confidence, known)
        if mode == "auto" or d.transcript is None:
            return d
        return Decision(d.transcript, True, f"mode {mode}", d.confidence, d.in_vocabulary)

    return decide


def _collection_words(vocab: Vocabulary | None) -> frozenset[str] | None:
    if vocab is None:
        return None
    return frozenset(w for form in vocab.forms for w in form.split())
