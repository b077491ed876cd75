"""Image preprocessing as tensor operations (the streaming path's device side) against the
encoders' own PIL preprocessing, and the JPEG header checks that choose the device decoder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from spaner.encoders.decode import Limits
from spaner.encoders.pixels import (
    PixelPlan,
    decode_jpegs,
    jpeg_header,
    plan_from_open_clip,
    to_uint8,
    transform,
)
from spaner.errors import InputError
from spaner.model.streaming import Loaded, assemble, failed_items


@pytest.fixture(scope="module")
def clip_image():
    from spaner.encoders import build_encoder

    return build_encoder("tiny-clip-image")


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def test_the_plan_is_read_from_open_clip_and_refused_for_other_transforms(clip_image):
    plan = clip_image.pixel_plan
    assert plan == PixelPlan(32, plan.mean, plan.std) and len(plan.mean) == 3
    from torchvision import transforms as T

    bilinear = T.Compose(
        [T.Resize(32), T.CenterCrop(32), T.ToTensor(), T.Normalize(plan.mean, plan.std)]
    )
    bilinear.transforms[0] = T.Resize(32, interpolation=T.InterpolationMode.BILINEAR)
    assert plan_from_open_clip(bilinear) is None
    jitter = T.Compose(
        [
            T.Resize(32, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(32),
            T.ColorJitter(0.5),
            T.ToTensor(),
            T.Normalize(plan.mean, plan.std),
        ]
    )
    assert plan_from_open_clip(jitter) is None


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (33, 90), (32, 32), (20, 12)])
def test_tensor_transform_matches_the_encoders_pil_preprocessing(clip_image, size):
    img = _photo(*size)
    pil = clip_image.preprocess([img])[0]
    tensor = transform([to_uint8(img)], clip_image.pixel_plan)[0]
    assert pil.shape == tensor.shape
    # at most one grey level apart after normalisation (PIL and torch round differently)
    one_level = 1.0 / 255 / min(clip_image.pixel_plan.std)
    assert float((pil - tensor).abs().max()) <= one_level * 1.01


def test_images_of_mixed_shapes_keep_their_order(clip_image):
    imgs = [_photo(64, 48, 1), _photo(40, 80, 2), _photo(64, 48, 3)]
    batch = transform([to_uint8(i) for i in imgs], clip_image.pixel_plan)
    for i, img in enumerate(imgs):
        alone = transform([to_uint8(img)], clip_image.pixel_plan)[0]
        assert torch.equal(batch[i], alone)


def test_jpeg_header_chooses_the_device_decoder_only_for_plain_jpeg():
    assert jpeg_header(_jpeg(_photo(64, 48)))
    assert jpeg_header(_jpeg(_photo(64, 48).convert("L")))
    assert not jpeg_header(_jpeg(_photo(64, 48).convert("CMYK")))
    png = io.BytesIO()
    _photo(64, 48).save(png, "PNG")
    assert not jpeg_header(png.getvalue())
    assert not jpeg_header(b"\xff\xd8\xff" + b"\x00" * 20)  # Pillow's path names the problem
    whole = _jpeg(_photo(64, 48))
    assert not jpeg_header(whole[: len(whole) - 40])  # truncated: no end marker


def test_jpeg_header_refuses_too_many_pixels_before_decoding():
    with pytest.raises(InputError, match="over the 100-pixel limit") as err:
        jpeg_header(_jpeg(_photo(64, 48)), Limits(max_pixels=100), "big.jpg")
    assert err.value.source == "big.jpg"


def test_one_bad_jpeg_never_drops_the_good_ones(clip_image):
    good = [_jpeg(_photo(64, 48, s)) for s in range(3)]
    truncated = good[0][: len(good[0]) // 3]
    items = [
        Loaded("jpeg", good[0], "a.jpg"),
        Loaded("jpeg", truncated, "cut.jpg"),
        Loaded("pixels", to_uint8(_photo(50, 50)), "b.png"),
        Loaded("jpeg", good[2], "c.jpg"),
    ]
    batch, keep = assemble(clip_image, items)
    assert keep == [0, 2, 3]
    assert batch.shape == (3, 3, 32, 32)
    problems = failed_items(clip_image, items, keep)
    assert list(problems) == [1]
    assert "truncated" in str(problems[1]) and problems[1].source == "cut.jpg"
    # the kept images are the ones the encoder's own path gives
    ref = clip_image.preprocess([Image.open(io.BytesIO(good[2])).convert("RGB")])[0]
    one_level = 1.0 / 255 / min(clip_image.pixel_plan.std)
    assert (
        float((batch[2] - ref).abs().max()) <= 3 * one_level
    )  # JPEG decoders may differ by a level


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvJPEG)")
def test_cuda_decoding_matches_pillow():  # pragma: no cover - GPU only
    data = _jpeg(_photo(640, 480))
    (img,) = decode_jpegs([data], torch.device("cuda"))
    ref = to_uint8(Image.open(io.BytesIO(data)).convert("RGB"))
    assert img is not None and img.shape == ref.shape
    # nvJPEG upsamples chroma without libjpeg's "fancy" filter: a few grey levels apart
    assert float((img.cpu().float() - ref.float()).abs().mean()) < 4.0


def test_libjpeg_decoding_on_worker_threads_matches_pillow():
    from spaner.model.streaming import _cpu_jpeg

    data = _jpeg(_photo(160, 120, 7))
    ref = to_uint8(Image.open(io.BytesIO(data)).convert("RGB"))
    got = _cpu_jpeg(data)
    assert got is not None and got.shape == ref.shape and got.dtype == torch.uint8
    assert float((got.float() - ref.float()).abs().mean()) < 1.0
    assert _cpu_jpeg(data[: len(data) // 4]) is None or True  # truncated: None or partial, never raises
    assert _cpu_jpeg(b"\xff\xd8\xff\x00garbage") is None
