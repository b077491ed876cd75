"""Safe decoding of raw inputs with hard limits.

Every failure raises :class:`~spaner.errors.InputError` naming the input. Limits are
checked from headers *before* pixels or samples are decoded, so decompression bombs and
hour-long uploads are refused without the memory cost of decoding them.
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from spaner.errors import InputError

__all__ = [
    "Limits",
    "DEFAULT_LIMITS",
    "RawInput",
    "read_bytes",
    "load_image",
    "load_audio",
    "load_audio_mono",
    "load_text",
]

RawInput = Union[str, os.PathLike, bytes]  # noqa: UP007 (a runtime alias; `|` on os.PathLike needs 3.10+ at runtime)


@dataclass(frozen=True)
class Limits:
    """Caps applied to every decoded input."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_audio_seconds: float = 600.0
    max_text_chars: int = 10_000


DEFAULT_LIMITS = Limits()


def _name(source: RawInput, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, bytes):
        return "<bytes>"
    return str(source)


def read_bytes(source: RawInput, limits: Limits = DEFAULT_LIMITS, name: str | None = None) -> bytes:
    """Read a file (or pass bytes through) with a size cap checked before reading."""
    label = _name(source, name)
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.exists():
            raise InputError(label, "file not found")
        if not path.is_file():
            raise InputError(label, "not a regular file")
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise InputError(label, f"file is {size} bytes, over the {limits.max_bytes}-byte limit")
        data = path.read_bytes()
    if len(data) == 0:
        raise InputError(label, "empty input (0 bytes)")
    if len(data) > limits.max_bytes:
        raise InputError(
            label, f"input is {len(data)} bytes, over the {limits.max_bytes}-byte limit"
        )
    return data


def _flatten(img):
    """RGB, with any transparency composited onto white (cut-out photos keep their look)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def load_image(source: RawInput, limits: Limits = DEFAULT_LIMITS, name: str | None = None):
    """Decode an image to RGB with Pillow, refusing more than ``limits.max_pixels`` pixels.

    The pixel count is read from the header before any pixel data is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    label = _name(source, name)
    data = read_bytes(source, limits, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise InputError(label, f"image has no pixels ({width}x{height})")
            if width * height > limits.max_pixels:
                raise InputError(
                    label,
                    f"image is {width}x{height} = {width * height} pixels, over the "
                    f"{limits.max_pixels}-pixel limit",
                )
            img.load()
            return _flatten(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(
            label, "not a recognised image format (expected PNG, JPEG, WebP, GIF, BMP, TIFF)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            label, f"refused as a decompression bomb (over the pixel limit): {exc}"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InputError(label, f"corrupt or truncated image: {exc}") from None


def _wav_truncation(data: bytes) -> str | None:
    """For RIFF/WAVE data, compare the declared ``data`` chunk size with the bytes present.

    libsndfile silently decodes a truncated WAV up to where it ends; we refuse it instead.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            have = len(data) - (pos + 8)
            if (
                size != 0xFFFFFFFF and size > have
            ):  # 0xFFFFFFFF: streaming writers leave the size unset
                return f"truncated WAV: the data chunk declares {size} bytes but only {have} are present"
            return None
        pos += 8 + size + (size & 1)
    return "WAV file has no 'data' chunk (truncated?)"


def load_audio(
    source: RawInput, limits: Limits = DEFAULT_LIMITS, name: str | None = None
) -> tuple[np.ndarray, int]:
    """Decode audio with soundfile to float32 ``[channels, samples]`` and its sample rate.

    Duration is checked from the header before samples are decoded.
    """
    import soundfile as sf

    label = _name(source, name)
    data = read_bytes(source, limits, label)
    problem = _wav_truncation(data)
    if problem:
        raise InputError(label, problem)
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:
        raise InputError(
            label, "not a recognised audio format (expected WAV, FLAC, OGG or MP3)"
        ) from None
    if info.samplerate <= 0:
        raise InputError(label, f"invalid sample rate {info.samplerate}")
    if info.frames <= 0:
        raise InputError(label, "audio has no samples")
    duration = info.frames / info.samplerate
    if duration > limits.max_audio_seconds:
        raise InputError(
            label,
            f"audio is {duration:.1f} s long, over the {limits.max_audio_seconds:.0f}-second limit",
        )
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise InputError(label, f"corrupt or truncated audio: {exc}") from None
    if samples.shape[0] == 0:
        raise InputError(label, "audio has no decodable samples (truncated?)")
    if not np.isfinite(samples).all():
        raise InputError(label, "audio contains NaN or infinite samples")
    return np.ascontiguousarray(samples.T), int(rate)


def load_audio_mono(
    source: RawInput, sample_rate: int, limits: Limits = DEFAULT_LIMITS, name: str | None = None
):
    """:func:`load_audio`, mixed down to mono and resampled: a float32 torch tensor ``[samples]``."""
    import torch

    samples, rate = load_audio(source, limits, name)
    mono = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=0)))
    if rate == sample_rate:
        return mono
    return _resampler(resampling_rate(rate, sample_rate), sample_rate)(mono)


def resampling_rate(rate: int, sample_rate: int) -> int:
    """The rate a clip recorded at ``rate`` is resampled from: ``rate`` itself, unless it shares
    so small a factor with ``sample_rate`` that the polyphase filter would be huge (11127 Hz to
    16 kHz took 14 s for a 1-s clip, 44101 Hz more than two minutes: one upload could stall the
    service). Such rates are read as the nearest multiple of 50 Hz, a change of speed and pitch
    of at most 0.6% at 8 kHz and 0.06% at 44.1 kHz."""
    if rate // math.gcd(rate, sample_rate) <= MAX_RATE_TERM:
        return rate
    return max(50, round(rate / 50) * 50)


#: the largest ``rate / gcd(rate, sample_rate)`` resampled as it is (44.1 kHz -> 16 kHz: 441)
MAX_RATE_TERM = 1000


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, sample_rate: int) -> Any:
    """torchaudio's resampler from ``rate`` to ``sample_rate``, its filter built once: building
    the windowed-sinc kernel (44.1 -> 16 kHz) cost more than decoding and resampling a clip."""
    import torch
    import torchaudio.transforms as T

    return T.Resample(
        rate, sample_rate, dtype=torch.float32
    )  # the kernel functional.resample builds


def load_text(source: str, limits: Limits = DEFAULT_LIMITS, name: str | None = None) -> str:
    """Validate a text input: a non-empty string within ``limits.max_text_chars``."""
    label = name or "<text>"
    if not isinstance(source, str):
        raise InputError(label, f"expected a string, got {type(source).__name__}")
    text = source.strip()
    if not text:
        raise InputError(label, "empty text")
    if len(text) > limits.max_text_chars:
        raise InputError(
            label,
            f"text is {len(text)} characters, over the {limits.max_text_chars}-character limit",
        )
    return text
