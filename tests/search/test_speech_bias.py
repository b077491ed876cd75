"""Biasing spoken queries toward the collection's words (spaner.search.speech_bias).

The spelling and vocabulary helpers are tested on strings; the biasing itself on the real
shipped Whisper tiny.en and a word spoken by eSpeak NG that tiny.en mishears on its own
("lark" -> "Lock."), so each assertion could fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spaner.search.speech_bias import (
    BIAS_SLACK,
    Vocabulary,
    bias_transcript,
    normalise,
)


def test_normalise_drops_case_punctuation_articles_and_spells_small_numbers() -> None:
    assert normalise("A Lark!") == "lark"
    assert normalise("  An   otter. ") == "otter"
    assert normalise("10.") == "ten"
    assert normalise("Two wild boars") == "two wild boars"
    assert normalise("100 yen") == "100 yen"


def test_vocabulary_dedups_by_form_and_skips_descriptions() -> None:
    long = "a very long description of a photo that nobody would say as a query"
    vocab = Vocabulary.build(["A frog", "frog", "A brown hen", long, "", "An owl"])
    assert vocab.entries == ["A frog", "A brown hen", "An owl"]
    assert vocab.forms == ["frog", "brown hen", "owl"]


def test_nearest_compares_whole_entries_and_their_last_word() -> None:
    vocab = Vocabulary.build(["A frog", "A brown hen", "A tent", "A toucan", "An otter"])
    # "10." is "ten": its nearest are the tent and, by its last word, the brown hen
    near = [vocab.entries[i] for i in vocab.nearest(["10."], 2)]
    assert set(near) == {"A tent", "A brown hen"}
    assert vocab.entries[vocab.nearest(["Order."], 1)[0]] == "An otter"
    assert vocab.nearest(["..."], 3) == []


def _espeak(word: str) -> torch.Tensor:
    from spaner.datasets.espeak import synthesize_isolated

    samples, _ = synthesize_isolated(word, voice="en", out_rate=16000)
    return torch.from_numpy(samples.astype(np.float32) / 32768.0)


@pytest.fixture(scope="module")
def whisper():
    from spaner.encoders import build_encoder

    return build_encoder("whisper-tiny-en-audio")


@pytest.fixture(scope="module")
def lark(whisper) -> tuple[np.ndarray, list[str]]:
    wave = whisper.condition(_espeak("lark"))
    enc = whisper.encode_window([wave])
    heard = whisper.transcribe([wave], 5, 5, encoded=enc)[0]
    return enc[0], [t for t, _ in heard["hypotheses"]]


def test_teacher_forced_scores_prefer_what_was_said(whisper, lark) -> None:
    enc, _ = lark
    said, other, far = whisper.text_logprobs(enc, [" Lark.", " Frog.", " A ripe red tomato."])
    assert said > other and said > far


def test_biasing_picks_the_collections_word_whisper_misheard(whisper, lark) -> None:
    enc, hyps = lark
    assert normalise(hyps[0]) != "lark"  # tiny.en alone does not hear it ("Lock.")
    vocab = Vocabulary.build(["A frog", "A lark", "A ripe red tomato", "A dry erase marker"])
    out = bias_transcript(whisper, enc, hyps, vocab)
    assert out.text == out.entry == "A lark"
    assert out.heard == hyps[0]
    assert -BIAS_SLACK <= out.margin < 0  # less likely than what it heard, within the slack


def test_biasing_keeps_what_whisper_heard_when_no_entry_is_close(whisper, lark) -> None:
    enc, hyps = lark
    vocab = Vocabulary.build(["A frog", "A lark", "A ripe red tomato"])
    strict = bias_transcript(whisper, enc, hyps, vocab, slack=0.0)
    assert strict.text == hyps[0] and strict.entry is None and strict.margin < 0
    # a vocabulary without anything spelt like what was heard changes nothing
    none = bias_transcript(whisper, enc, hyps, Vocabulary.build(["zzz"]))
    assert none.text == hyps[0] and none.entry is None


def test_spoken_queries_return_heard_and_match_and_bias_can_be_turned_off(whisper) -> None:
    from spaner.search.spoken import spoken_queries

    class _Model:  # the query path needs an audio and a text embedder and the transcriber
        encoders = {"audio": whisper}

        def embed(self, modality: str, items: list, names=None) -> np.ndarray:
            rng = np.random.default_rng(len(str(items)))
            return rng.normal(size=(len(items), 8)).astype(np.float32)

    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, _espeak("lark").numpy(), 16000, format="WAV")
    clip = buf.getvalue()
    vocab = ["A frog", "A lark", "A ripe red tomato"]
    on = spoken_queries(_Model(), [clip], mode="transcript", vocabulary=vocab)[0]
    off = spoken_queries(_Model(), [clip], mode="transcript", vocabulary=vocab, bias=False)[0]
    assert on.transcript == on.vocabulary_match == "A lark" and on.used == "transcript"
    assert off.transcript == off.heard == on.heard and off.vocabulary_match is None
    assert off.transcript != "A lark"
    assert on.to_dict()["heard"] == on.heard
