"""Training-time audio augmentation: each perturbation keeps length and rate, is seeded, mixes keep
the foreground's label, and a pitch change moves a tone by the expected ratio."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spaner.errors import ConfigError
from spaner.model.config import TrainConfig
from spaner.pipeline import Spaner
from spaner.training.audio_augment import (
    SPEECH,
    SPEECH_KEY,
    AudioRecipe,
    augment_waveform,
    change_pitch,
    get_audio_recipe,
    mix_at_snr,
    pick_background,
    recipe_key,
    register_audio_recipe,
    time_shift,
)
from spaner.training.features import FeatureCache

RATE = 16000
#: every perturbation off: the identity
STILL = AudioRecipe(speeds=(1.0,), telephone_p=0, reverb_p=0, noise_p=0)
ONE_AT_A_TIME = {
    "pitch": dataclasses.replace(STILL, pitch_p=1.0),
    "shift-circular": dataclasses.replace(STILL, shift_p=1.0, shift_circular=1.0),
    "shift-pad": dataclasses.replace(STILL, shift_p=1.0, shift_circular=0.0),
    "mix-clip": dataclasses.replace(STILL, mix_p=1.0, mix_clip=1.0),
    "mix-noise": dataclasses.replace(STILL, mix_p=1.0, mix_clip=0.0),
    "gain": dataclasses.replace(STILL, gain_p=1.0),
    "telephone": dataclasses.replace(STILL, telephone_p=1.0),
    "reverb": dataclasses.replace(STILL, reverb_p=1.0),
    "noise": dataclasses.replace(STILL, noise_p=1.0),
}


def _clip(seconds: float = 1.3, seed: int = 0) -> torch.Tensor:
    """A decaying chirp with a little noise: something every perturbation visibly changes."""
    t = torch.arange(int(seconds * RATE), dtype=torch.float32) / RATE
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.standard_normal(t.numel()).astype(np.float32))
    return 0.6 * torch.sin(2 * np.pi * (300 + 400 * t) * t) * torch.exp(-t) + 0.01 * noise


def _dominant_hz(wave: torch.Tensor) -> float:
    spec = torch.fft.rfft(wave * torch.hann_window(wave.numel()))
    return float(spec.abs().argmax()) * RATE / wave.numel()


def test_still_recipe_is_the_identity() -> None:
    wave = _clip()
    assert torch.equal(augment_waveform(wave, RATE, np.random.default_rng(0), STILL), wave)


@pytest.mark.precision("fp32")
@pytest.mark.parametrize("name", sorted(ONE_AT_A_TIME))
def test_each_perturbation_keeps_length_and_is_seeded(name: str) -> None:
    recipe = ONE_AT_A_TIME[name]
    wave, background = _clip(), _clip(0.4, seed=1)

    def copy(seed: int) -> torch.Tensor:
        return augment_waveform(wave, RATE, np.random.default_rng(seed), recipe, background)

    a, b, c = copy(3), copy(3), copy(4)
    assert a.shape == wave.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert name == "telephone" or not torch.equal(a, c)  # the telephone band draws nothing
    assert not torch.allclose(a, wave, atol=1e-4)
    assert float(a.abs().max()) <= 1.0


def test_the_speech_recipe_keeps_its_cache_key_and_others_get_their_own() -> None:
    assert recipe_key(SPEECH) == SPEECH_KEY == "audio-aug-v1"
    assert get_audio_recipe("speech") == SPEECH
    mixing = dataclasses.replace(SPEECH, mix_p=0.5)
    assert recipe_key(mixing) not in (
        SPEECH_KEY,
        recipe_key(dataclasses.replace(mixing, mix_p=0.6)),
    )
    with pytest.raises(ConfigError, match="unknown audio recipe"):
        get_audio_recipe("no-such-recipe")
    with pytest.raises(ConfigError, match="already registered"):
        register_audio_recipe("speech", mixing)


@pytest.mark.precision("fp32")
@pytest.mark.parametrize("semitones", [-2.0, 1.0, 3.0])
def test_pitch_change_moves_a_pure_tone_by_the_ratio(semitones: float) -> None:
    t = torch.arange(2 * RATE, dtype=torch.float32) / RATE
    tone = 0.5 * torch.sin(2 * np.pi * 440.0 * t)
    ratio = 2 ** (semitones / 12)
    out = change_pitch(tone, RATE, ratio)
    assert out.shape == tone.shape
    # the ratio is rounded so the source rate is a multiple of 50 Hz: within 50/16000
    window = out[: int(tone.numel() / max(ratio, 1.0)) - 100]  # the tone, not the padded end
    assert _dominant_hz(window) == pytest.approx(440.0 * ratio, abs=440.0 * 50 / RATE + 1.0)
    assert abs(_dominant_hz(window) - 440.0) > 20


def test_time_shift_moves_the_clip_round_or_with_silence() -> None:
    wave = torch.arange(1.0, 11.0)
    assert time_shift(wave, 3, circular=True).tolist() == [8, 9, 10, 1, 2, 3, 4, 5, 6, 7]
    assert time_shift(wave, 3, circular=False).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert time_shift(wave, -2, circular=False).tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 0, 0]


@pytest.mark.precision("fp32")
def test_mix_is_at_the_snr_and_the_foreground_stays_on_top() -> None:
    fg, bg = _clip(), _clip(0.5, seed=2).flip(0)
    out = mix_at_snr(fg, bg, 10.0, offset=123)
    added = out - fg
    snr = 10 * torch.log10(fg.pow(2).mean() / added.pow(2).mean())
    assert float(snr) == pytest.approx(10.0, abs=1e-3)
    assert torch.nn.functional.cosine_similarity(out, fg, dim=0) > 0.9
    assert torch.equal(mix_at_snr(fg, torch.zeros(100), 10.0), fg)


def test_background_is_another_concept() -> None:
    labels = [0, 0, 1, 2, 2, 2]
    for seed in range(20):
        for i in range(len(labels)):
            j = pick_background(i, labels, np.random.default_rng(seed))
            assert j is not None and labels[j] != labels[i]
    assert pick_background(0, [5, 5, 5], np.random.default_rng(0)) is None


@pytest.mark.slow
@pytest.mark.precision("fp32")
def test_mixed_copies_keep_their_source_label_and_cache(trimodal_set: Path, tmp_path: Path) -> None:
    register_audio_recipe("test-mix", dataclasses.replace(SPEECH, mix_p=1.0, mix_clip=1.0))
    sp = Spaner.from_profile("tiny", modalities=["text", "audio"])
    plain = sp.prepare(trimodal_set, TrainConfig(shots=2, seed=0, audio_augment=0))
    cache = FeatureCache(tmp_path / "cache")
    cfg = TrainConfig(shots=2, seed=0, audio_augment=2, audio_recipe="test-mix")
    aug = sp.prepare(trimodal_set, cfg, cache).train.modalities["audio"]
    base = plain.train.modalities["audio"]
    n = len(base)
    assert len(aug) == 3 * n
    for k in range(2):
        rows = [n + 2 * j + k for j in range(n)]
        assert aug.labels[rows].tolist() == base.labels.tolist()
        assert [aug.concepts[r] for r in rows] == list(base.concepts)
    speech = sp.prepare(trimodal_set, TrainConfig(shots=2, seed=0, audio_augment=2), cache)
    assert not torch.equal(aug.items[n].tokens, speech.train.modalities["audio"].items[n].tokens)
    again = sp.prepare(trimodal_set, cfg, cache).train.modalities["audio"]
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(aug.items, again.items, strict=True))
