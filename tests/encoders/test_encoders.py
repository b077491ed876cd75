"""Built-in encoders on their tiny/offline presets: token shapes, masks, native vectors, weights."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from spaner.encoders import build_encoder, list_encoders

from spaner.errors import EncoderLoadError, InputError


def _png(seed: int = 0, size: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(
        np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    ).save(buf, "PNG")
    return buf.getvalue()


def _wav(seconds: float, rate: int = 16000, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    x = np.random.default_rng(seed).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


OFFLINE = [
    "tiny-clip-image",
    "tiny-clip-text",
    "tiny-wav2vec2-audio",
    "tiny-bert-text",
    "tiny-clap-audio",
    "tiny-clap-text",
    "randconv-image",
    "randconv-wide-image",
    "logmel-audio",
    "randconv-audio",
    "minilm-l6-text",
]


@pytest.mark.parametrize("name", OFFLINE)
def test_token_shapes_and_masks(name):
    enc = build_encoder(name)
    spec = {s.name: s for s in list_encoders()}[name]
    assert enc.width == spec.width and enc.modality == spec.modality
    if enc.modality == "text":
        inputs = ["seven", "a much longer sentence about a handwritten seven"]
    elif enc.modality == "image":
        inputs = [_png(0), _png(1, size=48)]
    else:
        inputs = [_wav(1.0), _wav(0.3, rate=8000)]  # the second is resampled to the encoder's rate
    batch = enc.encode(inputs)
    assert batch.tokens.shape[0] == 2 and batch.tokens.shape[2] == enc.width
    assert batch.mask.dtype == torch.bool and batch.mask.any(1).all()
    assert not batch.tokens.requires_grad
    assert torch.isfinite(batch.tokens[batch.mask]).all()
    if name == "randconv-audio":  # time-normalised: every clip gives frames / 4 tokens
        assert batch.mask.sum(1).tolist() == [enc.frames // 4] * 2
    elif enc.modality in (
        "text",
        "audio",
    ):  # variable length: the shorter input has fewer valid tokens
        assert batch.mask[0].sum() != batch.mask[1].sum()
    # padding is masked: unpadding and re-padding round-trips
    items = batch.split()
    assert [it.tokens.shape[0] for it in items] == batch.mask.sum(1).tolist()


def test_clip_towers_share_one_model_and_reproduce_native_embeddings():
    # fp32 pinned: the check is exact reproduction of the backbone's own fp32 forward
    # (bf16 agreement is tests/encoders/test_precision.py's job)
    img, txt = (
        build_encoder("tiny-clip-image", precision="fp32"),
        build_encoder("tiny-clip-text", precision="fp32"),
    )
    assert img.backbone is txt.backbone and img.native_space == txt.native_space
    model = img.backbone.model
    tb = txt.encode(["a red square"])
    ib = img.encode([_png(3)])
    with torch.no_grad():
        assert torch.allclose(
            tb.native, model.encode_text(txt.preprocess(["a red square"])), atol=1e-5
        )
        assert torch.allclose(
            ib.native, model.encode_image(img.preprocess([img.load(_png(3))])), atol=1e-5
        )
    # text mask: up to and including the end-of-text token
    ids = txt.preprocess(["a red square"])[0]
    assert int(tb.mask[0].sum()) == int(ids.argmax()) + 1


def test_long_audio_is_chunked():
    enc = build_encoder("tiny-wav2vec2-audio", chunk_seconds=1.0, max_chunks=3)
    b = enc.encode([_wav(2.5), _wav(9.0)])
    # ~50 frames per second; the 9 s clip is capped at 3 chunks of 1 s
    assert 110 <= int(b.mask[0].sum()) <= 130
    assert 140 <= int(b.mask[1].sum()) <= 150


def test_bad_input_raises_typed_error_naming_the_input(tmp_path):
    enc = build_encoder("tiny-clip-image")
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    with pytest.raises(InputError, match="notes.png"):
        enc.encode([str(bad)], names=[str(bad)])


def test_missing_weights_error_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EncoderLoadError, match=r"--weights image="):
        build_encoder("openclip-vit-b-32-image")


def test_audio_bundle_without_network_says_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(EncoderLoadError, match=r"HUBERT_BASE.*--weights audio="):
        build_encoder("hubert-base-audio")


def test_local_weights_files_load(tmp_path):
    from safetensors.torch import save_file

    # torchaudio: a state dict saved as safetensors reproduces the same features
    ref = build_encoder("tiny-wav2vec2-audio", seed=3)
    path = tmp_path / "w2v.safetensors"
    save_file({k: v.contiguous() for k, v in ref.model.state_dict().items()}, str(path))
    loaded = build_encoder("tiny-wav2vec2-audio", weights=str(path), seed=99)
    wav = _wav(0.5)
    assert torch.equal(ref.encode([wav]).tokens, loaded.encode([wav]).tokens)
    assert loaded.weights == str(path)
    # open_clip: a local checkpoint path is accepted in place of a pretrained tag
    clip = build_encoder("tiny-clip-text", seed=5)
    cpath = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip.backbone.model.state_dict().items()}, str(cpath))
    clip2 = build_encoder("tiny-clip-text", weights=str(cpath), seed=6)
    assert torch.allclose(clip.encode(["seven"]).native, clip2.encode(["seven"]).native, atol=1e-6)
    with pytest.raises(EncoderLoadError, match="not found"):
        build_encoder("tiny-wav2vec2-audio", weights=str(tmp_path / "missing.safetensors"))


def test_seeded_presets_are_deterministic():
    a = build_encoder("randconv-image", seed=1).encode([_png(2)]).tokens
    b = build_encoder("randconv-image", seed=1).encode([_png(2)]).tokens
    c = build_encoder("randconv-image", seed=2).encode([_png(2)]).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def _burst(seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A word-like sound: noise shaped by a slow envelope, loud in the middle."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n) * np.sin(np.pi * t / seconds) ** 2 + 0.5 * np.sin(2 * np.pi * 300 * t)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _wav_of(x: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_trim_silence_drops_only_the_quiet_ends():
    from spaner.encoders.offline import trim_silence

    spec = torch.full((20, 4), -13.0)  # silence: log power ~1e-6
    spec[5:12] = 0.0  # voiced frames 5..11
    spec[8] = -13.0  # a pause inside the word is kept
    assert torch.equal(trim_silence(spec, 25.0), spec[5:12])
    quiet = torch.full((6, 4), -13.0)
    assert torch.equal(trim_silence(quiet, 25.0), quiet)  # nothing above the threshold: kept whole


def test_randconv_audio_ignores_leading_and_trailing_silence_and_round_trips():
    enc = build_encoder("randconv-audio")
    word = _burst()
    padded = np.concatenate([np.zeros(8000, np.float32), word, np.zeros(12000, np.float32)])
    a, b = enc.encode([_wav_of(word), _wav_of(padded)]).split()
    cos = torch.nn.functional.cosine_similarity(a.tokens.flatten(), b.tokens.flatten(), dim=0)
    assert cos > 0.98, cos
    untrimmed = build_encoder("randconv-audio", trim_db=1000.0)  # same net, silence kept
    ua, ub = untrimmed.encode([_wav_of(word), _wav_of(padded)]).split()
    assert (
        torch.nn.functional.cosine_similarity(ua.tokens.flatten(), ub.tokens.flatten(), dim=0)
        < cos - 0.05
    )
    # config() rebuilds the same encoder (same cache key, same features)
    again = build_encoder("randconv-audio", **enc.config())
    assert again.fingerprint() == enc.fingerprint()
    assert torch.equal(again.encode([_wav_of(word)]).tokens, enc.encode([_wav_of(word)]).tokens)
    other = build_encoder("randconv-audio", trim_db=35.0)
    assert other.fingerprint() != enc.fingerprint()
    with pytest.raises(ValueError, match="multiples"):
        build_encoder("randconv-audio", frames=30)


@pytest.mark.precision("fp32")  # alone vs batched to 1e-4: bf16 padding shifts more
def test_texts_are_encoded_in_length_order_and_returned_in_theirs(tmp_path) -> None:
    """Texts are batched by length (a batch is padded to its longest), yet each comes back in
    its place with the features it gets alone, and the cache then serves them as they are."""
    from spaner.training.features import FeatureCache, encode_items

    enc = build_encoder("minilm-l6-text")
    values = ["a frog", "the croak of a frog at night by a pond in the rain", "a cat", "a tree"]
    values += ["a long description of a red bicycle leaning against a wall", "a dog", "rain"]
    cache = FeatureCache(tmp_path)
    items = encode_items(enc, values, cache, batch_size=2)
    for value, item in zip(values, items, strict=True):
        alone = enc.encode([value]).split()[0]
        assert item.tokens.shape == alone.tokens.shape
        assert torch.allclose(item.tokens, alone.tokens, atol=1e-4)
    again = encode_items(enc, values, cache, batch_size=2)
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(items, again, strict=True))
