"""``auto``'s route for a spoken query (spaner.search.spoken_policy), numbers both ways
(spaner.search.numbers), and spoken_queries putting them together.

The rule is tested on constructed Whisper outputs (a stub transcriber returning given texts and
scores); one test runs the real shipped Whisper tiny.en on eSpeak NG saying "seven".
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from spaner.search.numbers import number_style, numerals_to_words, words_to_numerals
from spaner.search.speech_bias import normalise
from spaner.search.spoken import spoken_queries
from spaner.search.spoken_policy import (
    DEFAULT_POLICY,
    HALLUCINATIONS,
    SpeechPolicy,
    clean_transcript,
    text_vocabulary,
    transcript_words,
)

WORDS = frozenset({"two", "seven", "frog", "a", "lark", "elephant", "i", "saw", "cats", "three"})


# -- numbers ------------------------------------------------------------------------------------
def test_numerals_become_words() -> None:
    assert numerals_to_words("2.") == "Two."
    assert numerals_to_words("7") == "Seven"
    assert numerals_to_words("I saw 3 cats") == "I saw three cats"
    assert numerals_to_words("21!") == "Twenty-one!"
    assert numerals_to_words("40") == "Forty"
    assert numerals_to_words("2.5 and 100 and 3rd") == "2.5 and 100 and 3rd"


def test_words_become_numerals() -> None:
    assert words_to_numerals("Two.") == "2."
    assert words_to_numerals("seven") == "7"
    assert words_to_numerals("twenty one") == "21"
    assert words_to_numerals("Ninety-nine.") == "99."
    assert words_to_numerals("someone is alone") == "someone is alone"


def test_a_numeral_meets_its_word_in_matching() -> None:
    assert normalise("2.") == normalise("Two") == normalise("two") == "two"
    assert normalise("Thirty.") == normalise("30") == "thirty"
    assert transcript_words("2 frogs") == ["two", "frogs"]


def test_number_style_follows_the_collection() -> None:
    assert number_style(["Two", "Three", "A frog"]) == "words"
    assert number_style(["2", "3", "the digit 4"]) == "numerals"
    assert number_style(["A frog"]) == "words"


# -- cleaning -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Thanks for watching.",
        "Thank you.",
        " you",
        "Bye.",
        "Bye bye.",
        "Subtitles by the Amara.org community",
    ],
)
def test_stock_hallucinations_are_dropped(text: str) -> None:
    kept, why = clean_transcript(text)
    assert kept is None and why.startswith("hallucination dropped")


@pytest.mark.parametrize("text", ["(frog croaking)", "[BLANK_AUDIO]", "♪", "♪ ♪", "*sigh*"])
def test_sound_annotations_leave_nothing(text: str) -> None:
    kept, why = clean_transcript(text)
    assert kept is None and why in ("sound annotation only", "no words")


@pytest.mark.parametrize("text", ["Mm.", "Oh.", "Ha ha ha!", "AHHHHHHH!", "Yeah."])
def test_bare_interjections_are_dropped(text: str) -> None:
    kept, why = clean_transcript(text)
    assert kept is None and why.startswith("interjections only")


def test_words_are_kept_and_annotations_removed() -> None:
    assert clean_transcript("(laughs) A frog.") == ("A frog.", None)
    assert clean_transcript("Thank you, frog.")[0] == "Thank you, frog."
    assert "you" in HALLUCINATIONS


# -- the rule -----------------------------------------------------------------------------------
def test_a_short_number_word_is_speech_despite_a_high_no_speech_probability() -> None:
    d = DEFAULT_POLICY.decide("2.", 0.64, -1.22, (WORDS,))
    assert d.use_transcript and d.transcript == "2."
    assert "100% in-vocabulary" in d.reason and "confidence -1.22" in d.reason


def test_unknown_words_go_by_sound_unless_the_collection_knows_them() -> None:
    d = DEFAULT_POLICY.decide("Toucan.", 0.05, -0.5, (WORDS,))
    assert not d.use_transcript and d.reason.startswith("unknown words")
    assert DEFAULT_POLICY.decide("Toucan.", 0.05, -0.5, (WORDS, {"toucan"})).use_transcript


def test_low_confidence_and_no_speech_go_by_sound() -> None:
    p = DEFAULT_POLICY
    low = p.decide("A frog.", 0.1, p.min_confidence - 0.5, (WORDS,))
    assert not low.use_transcript and low.reason.startswith("low confidence")
    silent = p.decide("A frog.", p.max_no_speech, -0.3, (WORDS,))
    assert not silent.use_transcript and silent.reason.startswith("no speech")


def test_the_rule_combines_all_three() -> None:
    strict = SpeechPolicy(max_no_speech=0.5, min_confidence=-1.0, min_in_vocabulary=1.0)
    assert strict.decide("I saw cats.", 0.4, -0.9, (WORDS,)).use_transcript
    assert not strict.decide("I saw cats.", 0.5, -0.9, (WORDS,)).use_transcript
    assert not strict.decide("I saw cats.", 0.4, -1.1, (WORDS,)).use_transcript
    assert not strict.decide("I saw dogs.", 0.4, -0.9, (WORDS,)).use_transcript
    half = SpeechPolicy(max_no_speech=0.5, min_confidence=-1.0, min_in_vocabulary=0.5)
    assert half.decide("I saw dogs.", 0.4, -0.9, (WORDS,)).use_transcript


def test_text_vocabulary_keeps_whole_wordpiece_words() -> None:
    class Tok:
        def get_vocab(self) -> dict[str, int]:
            return {"[CLS]": 0, "frog": 1, "##s": 2, "Seven": 3, "2": 4, "don't": 5}

    class Enc:
        tokenizer = Tok()

    assert text_vocabulary(Enc()) == frozenset({"frog", "seven"})
    assert text_vocabulary(object()) is None


# -- spoken_queries with a stub Whisper -----------------------------------------------------------
class _StubWhisper:
    """Says what it is given: each clip's source *is* ``(text, no_speech_prob, score)``."""

    def __init__(self) -> None:
        self.tokenizer = None

    def transcribe(self, waves, beam_size=1, num_hypotheses=1, encoded=None):
        return [{"text": t, "no_speech_prob": p, "hypotheses": [(t, s)]} for t, p, s in encoded]

    def encode_window(self, waves):
        return list(waves)

    def load(self, source, name=None):
        return source

    def text_logprobs(self, encoded, texts):
        return np.zeros(len(texts), np.float32)  # every candidate as likely: bias always snaps


class _StubSpaner:
    def __init__(self) -> None:
        class Text:
            class tokenizer:  # noqa: N801 - mimics a HF tokenizer attribute
                @staticmethod
                def get_vocab() -> dict[str, int]:
                    return {w: i for i, w in enumerate(sorted(WORDS))}

        self.encoders = {"audio": _StubWhisper(), "text": Text()}
        self.texts: list[str] = []

    def embed(self, modality, values, names=None):
        if modality == "text":
            self.texts += list(values)
        rng = np.random.default_rng(len(values))
        return rng.normal(size=(len(values), 8)).astype(np.float32)


def test_auto_searches_a_number_by_its_words_in_the_collections_style() -> None:
    sp = _StubSpaner()
    clip = ("2.", 0.64, -1.2)
    (q,) = spoken_queries(sp, [clip], vocabulary=["Two", "A frog"], bias=False)
    assert q.used == "transcript" and q.transcript == "Two." and q.heard == "2."
    assert q.to_dict()["reason"].startswith("100% in-vocabulary words")
    assert sp.texts == ["Two."]
    (q,) = spoken_queries(sp, [clip], vocabulary=["2", "3"], bias=False)
    assert q.transcript == "2."
    (q,) = spoken_queries(sp, [("Two.", 0.64, -1.2)], vocabulary=["2", "3"], bias=False)
    assert q.transcript == "2."


def test_a_hallucination_is_searched_by_its_audio_in_every_mode() -> None:
    for mode in ("auto", "transcript", "both"):
        sp = _StubSpaner()
        (q,) = spoken_queries(sp, [("Thanks for watching.", 0.1, -0.2)], mode=mode)
        assert q.used == "audio" and q.transcript is None
        assert q.heard == "Thanks for watching."
        assert q.to_dict()["reason"].startswith("hallucination dropped")
        assert sp.texts == []


def test_auto_routes_by_content_and_the_threshold_overrides_the_no_speech_ceiling() -> None:
    sp = _StubSpaner()
    clips = [("A frog.", 0.3, -0.5), ("Keto.", 0.05, -0.5), ("Mm.", 0.2, -1.0)]
    used = [q.used for q in spoken_queries(sp, clips)]
    assert used == ["transcript", "audio", "audio"]
    (q,) = spoken_queries(sp, clips[:1], threshold=0.2)
    assert q.used == "audio" and q.reason.startswith("no speech")


def test_biasing_snaps_only_a_transcript_that_is_used() -> None:
    sp = _StubSpaner()
    clips = [("Seven.", 0.6, -1.0), ("Keto.", 0.05, -0.5)]
    a, b = spoken_queries(sp, clips, vocabulary=["seven", "a lark"])
    assert a.used == "transcript" and a.vocabulary_match == "seven" and a.transcript == "seven"
    assert b.used == "audio" and b.vocabulary_match is None


# -- the real Whisper ---------------------------------------------------------------------------
@pytest.mark.slow  # the shipped Whisper tiny.en, MiniLM's tokenizer and eSpeak NG
def test_real_whisper_hears_an_espeak_seven_as_a_transcript() -> None:
    """A digits collection (its words zero..nine), a voice tiny.en half-hears ("Heaven.", with
    "Seven." in its n-best): ``auto`` takes the transcript and biasing makes it "seven"."""
    from spaner.encoders import build_encoder
    from spaner.encoders.hf_text_encoder import minilm_path
    from transformers import AutoTokenizer

    from spaner.datasets.espeak import synthesize_isolated
    from spaner.search.numbers import NUMBER_WORDS

    whisper = build_encoder("whisper-tiny-en-audio")
    samples, sr = synthesize_isolated(
        "seven", voice="en-gb-scotland+klatt", rate=180, pitch=50, seed=2, out_rate=16000
    )
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32) / 32768.0, sr, format="WAV")

    class Text:
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())

    class Sp:
        encoders = {"audio": whisper, "text": Text()}

        def embed(self, modality, values, names=None):
            return np.ones((len(values), 4), np.float32)

    digits = list(NUMBER_WORDS[:10])
    (q,) = spoken_queries(Sp(), [buf.getvalue()], names=["seven.wav"], vocabulary=digits)
    assert q.used == "transcript", q.reason
    assert normalise(q.transcript) == "seven", (q.heard, q.transcript)
    assert q.reason.startswith("100% in-vocabulary words")
