"""The speech-embedding encoder: Google's speech embedding through the pyopen-wakeword wheel.

The real shipped TFLite models run here (they are small and fast); the wheel exists for Linux
x86_64 only, so on other platforms the tests that need it are skipped with that reason, and the
error path for a missing package is tested everywhere.
"""

from __future__ import annotations

import io
import platform
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from spaner.encoders import build_encoder, list_encoders

from spaner.errors import EncoderLoadError, InputError

try:
    import pyopen_wakeword  # noqa: F401

    HAVE_WHEEL = sys.platform.startswith("linux") and platform.machine().lower() in (
        "x86_64",
        "amd64",
    )
except ImportError:
    HAVE_WHEEL = False

needs_wheel = pytest.mark.skipif(
    not HAVE_WHEEL,
    reason="pyopen-wakeword (pip install 'spaner[wakeword]') ships for Linux x86_64 only",
)
RATE = 16000


def _wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _noise(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return _wav(rng.standard_normal(int(seconds * RATE)) * 0.1)


def _spoken(word: str, pitch: int = 50, rate: int = 175) -> bytes:
    from spaner.datasets.espeak import synthesize_isolated

    samples, sr = synthesize_isolated(word, voice="en", pitch=pitch, rate=rate, out_rate=RATE)
    return _wav(samples.astype(np.float32) / 32768.0, sr)


@pytest.fixture(scope="module")
def enc():
    return build_encoder("speech-embedding-audio")


def _pooled(batch) -> torch.Tensor:
    m = batch.mask[..., None].float()
    pooled = (batch.tokens * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


@needs_wheel
def test_loads_the_shipped_models(enc) -> None:
    assert enc.modality == "audio" and enc.width == 96
    assert "pyopen-wakeword" in enc.weights
    assert enc.bf16_capable is False and enc.compute_precision == "fp32"


@needs_wheel
def test_shapes_and_mask_for_short_and_long_clips(enc) -> None:
    from spaner.encoders.speech_embedding_encoder import n_tokens

    # 0.3 s is under the 0.79-s receptive field: padded to exactly one token;
    # 1 s -> 97 mel frames -> 3 windows of 76 every 8; 3 s -> 297 frames -> 28 windows
    assert (n_tokens(16000), n_tokens(48000)) == (3, 28)
    batch = enc.encode([_noise(0.3), _noise(1.0, 1), _noise(3.0, 2)])
    assert batch.tokens.shape == (3, 28, 96)
    assert batch.mask.sum(1).tolist() == [1, 3, 28]
    for i, n in enumerate([1, 3, 28]):
        assert batch.mask[i, :n].all() and not batch.mask[i, n:].any()
        assert batch.tokens[i, n:].abs().sum() == 0
    assert torch.isfinite(batch.tokens).all()
    assert batch.tokens[batch.mask].abs().sum(-1).min() > 0


@pytest.mark.slow
@needs_wheel
def test_deterministic_and_independent_of_the_batch(enc) -> None:
    clips = [_noise(0.3), _spoken("seven"), _noise(3.0, 2)]
    a, b = enc.encode(clips), enc.encode(clips)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.mask, b.mask)
    # the mel model floors its spectrum by the loudest value in its input tensor, so a clip
    # must give the same tokens alone as beside louder or longer clips
    for i, clip in enumerate(clips):
        alone = enc.encode([clip])
        n = alone.tokens.shape[1]
        assert torch.allclose(alone.tokens[0], a.tokens[i, :n], atol=1e-4)


@pytest.mark.slow
@needs_wheel
def test_spoken_words_differ_from_noise_and_from_each_other(enc) -> None:
    clips = {
        "three": _spoken("three"),
        "three, other voice": _spoken("three", pitch=30, rate=140),
        "seven": _spoken("seven"),
        "noise": _noise(1.0),
    }
    p = _pooled(enc.encode(list(clips.values())))
    sim = p @ p.T
    same_word = float(sim[0, 1])
    assert same_word > float(sim[0, 3]) + 0.1  # "three" is not noise
    assert same_word > float(sim[0, 2]) + 0.1  # nor "seven"
    assert float(sim[1, 0]) > float(sim[1, 2]) + 0.1


@needs_wheel
def test_level_and_leading_silence_are_normalised_away(enc) -> None:
    from spaner.datasets.espeak import synthesize_isolated

    samples, sr = synthesize_isolated("four", voice="en", out_rate=RATE)
    x = samples.astype(np.float32) / 32768.0
    quiet = np.concatenate([np.zeros(RATE // 2, np.float32), 0.1 * x, np.zeros(RATE // 4)])
    p = _pooled(enc.encode([_wav(x), _wav(quiet)]))
    assert float(p[0] @ p[1]) > 0.98


@needs_wheel
def test_min_seconds_pads_short_clips_to_more_tokens() -> None:
    enc = build_encoder("speech-embedding-audio", min_seconds=1.0)
    assert enc.encode([_noise(0.3)]).mask.sum().item() == 3
    assert enc.config()["min_seconds"] == 1.0


@needs_wheel
def test_bad_audio_is_an_input_error(enc) -> None:
    with pytest.raises(InputError):
        enc.encode([b"this is not audio"], names=["note.wav"])


@needs_wheel
def test_weights_dir_without_the_models_is_a_load_error(tmp_path) -> None:
    with pytest.raises(EncoderLoadError, match="embedding_model.tflite"):
        build_encoder("speech-embedding-audio", weights=str(tmp_path))


def test_missing_package_is_a_load_error_with_the_install_hint(monkeypatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "pyopen_wakeword", None)  # import raises ImportError
    with pytest.raises(EncoderLoadError, match=r"pip install 'spaner\[wakeword\]'"):
        build_encoder("speech-embedding-audio")


def test_other_platforms_get_a_load_error(monkeypatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    with pytest.raises(EncoderLoadError, match="Linux x86_64"):
        build_encoder("speech-embedding-audio")


def test_listed_even_without_the_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyopen_wakeword", None)
    spec = {s.name: s for s in list_encoders("audio")}["speech-embedding-audio"]
    assert spec.width == 96 and "pyopen-wakeword" in spec.weights


@needs_wheel
def test_training_time_augmentation_applies(enc) -> None:
    from spaner.training.augment import augment_waveform

    wave = enc.load(_noise(1.0))
    assert wave.ndim == 1 and enc.sample_rate == RATE  # what spaner.training.augment requires
    for k in range(3):
        aug = augment_waveform(wave, enc.sample_rate, np.random.default_rng(k))
        batch = enc.forward(enc.preprocess([aug]))
        assert batch.mask.sum() >= 1 and torch.isfinite(batch.tokens).all()
