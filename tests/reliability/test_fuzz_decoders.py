"""Property tests: the image and audio decoders, fed mutated and truncated files, either
decode or raise :class:`InputError` — never another exception, never a hang."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spaner.encoders.decode import Limits, load_audio, load_image

from spaner.errors import InputError

LIMITS = Limits(max_bytes=2_000_000, max_pixels=1_000_000, max_audio_seconds=5.0)
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def _image(fmt: str) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _audio(fmt: str) -> bytes:
    import soundfile as sf

    t = np.arange(1600) / 8000
    buf = io.BytesIO()
    sf.write(buf, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, format=fmt)
    return buf.getvalue()


IMAGES = {f: _image(f) for f in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")}
AUDIO = {f: _audio(f) for f in ("WAV", "FLAC", "OGG")}


@st.composite
def mutated(draw: st.DrawFn, bases: dict[str, bytes]) -> bytes:
    data = bytearray(bases[draw(st.sampled_from(sorted(bases)))])
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def _only_input_error(fn, data: bytes) -> None:
    with contextlib.suppress(InputError):
        fn(data, LIMITS, name="fuzz")


@pytest.mark.timeout(120)
@FUZZ
@given(mutated(IMAGES))
def test_load_image_mutated(data: bytes) -> None:
    _only_input_error(load_image, data)


@pytest.mark.timeout(120)
@FUZZ
@given(mutated(AUDIO))
def test_load_audio_mutated(data: bytes) -> None:
    _only_input_error(load_audio, data)


@pytest.mark.parametrize("fmt", sorted(IMAGES))
def test_every_image_truncation_point(fmt: str) -> None:
    data = IMAGES[fmt]
    for cut in range(0, len(data), max(1, len(data) // 60)):
        _only_input_error(load_image, data[:cut])


@pytest.mark.parametrize("fmt", sorted(AUDIO))
def test_every_audio_truncation_point(fmt: str) -> None:
    data = AUDIO[fmt]
    for cut in range(0, len(data), max(1, len(data) // 60)):
        _only_input_error(load_audio, data[:cut])


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _only_input_error(load_image, data)
    _only_input_error(load_audio, data)
