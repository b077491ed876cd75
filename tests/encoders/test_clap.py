"""The CLAP encoders on a random tiny CLAP of the real architecture, loaded the way real weights
are (a safetensors directory through the plugin): masks, batching, long clips without random
crops, the text tower's shared space, safetensors only, bf16, and the front end against
transformers' own feature extractor."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from spaner.encoders import build_encoder, list_encoders
from spaner.encoders.clap_encoder import TINY_CLAP, ClapAudioEncoder, ClapTextEncoder, load_clap
from spaner.encoders.clap_features import log_mel
from spaner.encoders.precision import FrozenWeights

from spaner.errors import EncoderLoadError, InputError
from spaner.profiles import PROFILES

FUSED = {
    **TINY_CLAP,
    "audio": {**TINY_CLAP["audio"], "enable_fusion": True},
    "extractor": {"truncation": "fusion", "frequency_min": 50},
}


def _wav(seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _save(tiny: dict, seed: int, out: Path) -> Path:
    """A tiny CLAP written as a real checkpoint directory: model.safetensors, config,
    tokenizer and preprocessor config."""
    backbone = load_clap(None, tiny, seed)
    backbone.model.save_pretrained(out)
    backbone.tokenizer.save_pretrained(out)
    backbone.extractor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(TINY_CLAP, 7, tmp_path_factory.mktemp("clap-unfused"))


@pytest.fixture(scope="session")
def fused_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(FUSED, 8, tmp_path_factory.mktemp("clap-fused"))


@pytest.mark.precision("fp32")
def test_a_saved_checkpoint_loads_by_path_and_gives_the_same_features(clap_dir: Path) -> None:
    assert (clap_dir / "model.safetensors").is_file()
    assert not list(clap_dir.glob("*.bin"))
    audio = build_encoder("clap-htsat-unfused-audio", weights=str(clap_dir))
    text = build_encoder("clap-htsat-unfused-text", weights=str(clap_dir))
    ref_audio = build_encoder("tiny-clap-audio", seed=7)
    ref_text = build_encoder("tiny-clap-text", seed=7)
    assert audio.backbone is not ref_audio.backbone  # really loaded from the directory
    clips = [_wav(1.0), _wav(2.5, freq=880)]
    a, b = audio.encode(clips), ref_audio.encode(clips)
    assert torch.allclose(a.tokens, b.tokens, atol=1e-5) and torch.equal(a.mask, b.mask)
    assert torch.allclose(a.native, b.native, atol=1e-6)
    phrases = ["a dog barking", "rain on a tin roof"]
    assert torch.allclose(text.encode(phrases).native, ref_text.encode(phrases).native, atol=1e-6)
    # one backbone per checkpoint: both towers, one native space
    assert audio.backbone is text.backbone and audio.native_space == text.native_space
    assert audio.native_space == f"clap:{clap_dir.resolve()}" and audio.native_dim == 32


def test_pickle_checkpoints_are_refused_unread(tmp_path: Path, monkeypatch) -> None:
    backbone = load_clap(None, TINY_CLAP, 0)
    backbone.model.config.save_pretrained(tmp_path)
    backbone.tokenizer.save_pretrained(tmp_path)
    backbone.extractor.save_pretrained(tmp_path)
    torch.save(backbone.model.state_dict(), tmp_path / "pytorch_model.bin")
    unpickled = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a) or real(*a, **k))
    with pytest.raises(
        EncoderLoadError, match=r"no file named model.safetensors.*safetensors only"
    ):
        build_encoder("clap-htsat-unfused-audio", weights=str(tmp_path))
    assert not unpickled


def test_a_hub_name_without_network_says_what_to_pass() -> None:
    with pytest.raises(EncoderLoadError, match=r"laion/clap-htsat-unfused.*--weights audio="):
        build_encoder("clap-htsat-unfused-audio")


@pytest.mark.precision("fp32")
def test_masks_follow_the_clip_and_long_clips_are_windowed() -> None:
    enc = build_encoder("tiny-clap-audio", seed=7)
    assert (enc.sample_rate, enc.window_s, enc.steps, enc.bands) == (48000, 10.0, 32, 2)
    assert enc.width == 2 * 64
    out = enc.encode([_wav(0.5), _wav(3.0), _wav(25.0, rate=44100), _wav(10.4)])
    # 32 tokens per 10 s; a short clip keeps the tokens that see it; 25 s = 10 + 10 + 5 s;
    # 10.4 s: the 0.4-s tail is under a second and dropped
    assert out.mask.sum(1).tolist() == [2, 10, 32 + 32 + 16, 32]
    assert out.tokens.shape == (4, 80, 128)
    assert not out.tokens[0, 2:].any()  # padding is zero
    assert torch.allclose(out.native.norm(dim=1), torch.ones(4))
    capped = build_encoder("tiny-clap-audio", seed=7, max_windows=2)
    assert capped.encode([_wav(25.0)]).mask.sum().item() == 64


@pytest.mark.precision("fp32")
def test_batching_does_not_change_an_item() -> None:
    enc = build_encoder("tiny-clap-audio", seed=7)
    clips = [_wav(0.7, seed=1), _wav(12.0, freq=300, seed=2), _wav(4.0, freq=650, seed=3)]
    batch = enc.encode(clips)
    for i, clip in enumerate(clips):
        alone = enc.encode([clip])
        n = int(alone.mask.sum())
        assert int(batch.mask[i].sum()) == n
        assert torch.allclose(batch.tokens[i, :n], alone.tokens[0, :n], atol=1e-5)
        assert torch.allclose(batch.native[i], alone.native[0], atol=1e-6)


@pytest.mark.precision("fp32")
def test_fusion_checkpoints_are_deterministic(fused_dir: Path) -> None:
    """The extractor draws its crops of a long clip at random and marks a random short clip of
    a batch as longer; here neither happens."""
    enc = build_encoder("clap-htsat-unfused-audio", weights=str(fused_dir))
    assert enc.backbone.fusion
    long_clip, short = _wav(27.0, freq=500), _wav(2.0, freq=900)
    np.random.seed(1)
    a = enc.encode([long_clip, short])
    np.random.seed(2)
    b = enc.encode([long_clip, short])
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.native, b.native)
    assert a.mask.sum(1).tolist() == [32, 7]  # one fused window for the long clip
    alone = enc.encode([short])
    assert torch.allclose(alone.native[0], a.native[1], atol=1e-6)
    batch = enc.preprocess([enc.load(long_clip), enc.load(short)])
    assert batch["is_longer"].flatten().tolist() == [True, False]
    assert batch["input_features"].shape[1] == 4  # the whole clip shrunk + three crops


@pytest.mark.precision("fp32")
def test_front_end_matches_transformers_feature_extractor() -> None:
    from transformers import ClapFeatureExtractor

    ex = ClapFeatureExtractor(frequency_min=50)
    wave = np.random.default_rng(0).standard_normal(48000 * 3).astype(np.float32) * 0.1
    for filters in (ex.mel_filters_slaney, ex.mel_filters):
        ref = ex._np_extract_fbank_features(wave.astype(np.float64), filters)
        ours = log_mel(torch.from_numpy(wave)[None], filters, 1024, 480)[0].numpy()
        assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-3
    # and the whole unfused front end equals the extractor's on a clip it does not crop
    enc = build_encoder("tiny-clap-audio", seed=7)
    ref = enc.backbone.extractor(wave, sampling_rate=48000, return_tensors="pt")
    buf = io.BytesIO()
    sf.write(buf, wave, 48000, format="WAV", subtype="FLOAT")
    ours = enc.preprocess([enc.load(buf.getvalue())])["input_features"]
    assert ours.shape == ref["input_features"].shape
    assert torch.allclose(ours, ref["input_features"].float(), atol=1e-3)


def test_bad_audio_is_an_input_error_naming_it(tmp_path: Path) -> None:
    enc = build_encoder("tiny-clap-audio", seed=7)
    bad = tmp_path / "bark.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not really")
    with pytest.raises(InputError, match="bark.wav"):
        enc.encode([str(bad)], names=[str(bad)])
    with pytest.raises(InputError, match="empty text"):
        build_encoder("tiny-clap-text", seed=7).encode(["   "])


@pytest.mark.precision("fp32")
def test_text_tower_shares_the_native_space() -> None:
    audio = build_encoder("tiny-clap-audio", seed=7)
    text = audio.text_tower()
    assert isinstance(text, ClapTextEncoder) and text.backbone is audio.backbone
    assert text.native_space == audio.native_space and text.native_dim == audio.native_dim
    out = text.encode(["a dog barking", "rain"])
    assert out.mask.sum(1).tolist()[1] < out.mask.sum(1).tolist()[0]
    assert torch.allclose(out.native.norm(dim=1), torch.ones(2))
    assert build_encoder("tiny-wav2vec2-audio").text_tower() is None
    assert (
        build_encoder("tiny-clap-audio", seed=7, precision="bf16").text_tower().precision == "bf16"
    )


@pytest.mark.parametrize("cls", [ClapAudioEncoder, ClapTextEncoder])
def test_bf16_runs_on_bf16_weights_and_fp32_comes_back_exactly(cls) -> None:
    enc = cls("bf16-check", tiny=TINY_CLAP, seed=121)
    enc.set_precision("fp32")
    raws = ["a dog barking", "wind"] if cls is ClapTextEncoder else [_wav(1.0), _wav(3.0, freq=700)]
    fp32 = enc.encode(raws)
    enc.set_precision("bf16")
    bf16 = enc.encode(raws)
    (tower,) = enc.modules()
    dtypes = {p.dtype for p in tower.parameters() if p.is_floating_point()}
    assert dtypes == {torch.bfloat16}
    assert FrozenWeights.of(tower).stored() == [torch.bfloat16]  # originals released: rebuildable
    assert bf16.tokens.dtype == torch.float32 and not torch.equal(bf16.tokens, fp32.tokens)
    assert float(F.cosine_similarity(bf16.native, fp32.native).min()) >= 0.99
    enc.set_precision("fp32")
    again = enc.encode(raws)
    assert torch.equal(again.tokens, fp32.tokens) and torch.equal(again.native, fp32.native)
    assert not any(p.requires_grad for p in tower.parameters())


def test_registered_presets_and_the_default_profile() -> None:
    names = {s.name: s for s in list_encoders("audio")}
    assert {"clap-htsat-unfused-audio", "clap-general-audio", "tiny-clap-audio"} <= set(names)
    assert "hubert-base-audio" in names  # still there, for speech
    assert PROFILES["default"].encoders["audio"] == "clap-htsat-unfused-audio"
    text = {s.name: s for s in list_encoders("text")}
    assert (
        text["clap-htsat-unfused-text"].native_space
        == names["clap-htsat-unfused-audio"].native_space
    )
