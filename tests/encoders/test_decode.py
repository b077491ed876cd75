"""Safe decoding: every bad input raises one typed error naming the input."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from spaner.encoders.decode import Limits, load_audio, load_image, load_text

from spaner.errors import InputError


def _png(w: int = 8, h: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _wav(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(
        buf,
        np.sin(np.arange(int(seconds * rate)) / 5).astype(np.float32) * 0.3,
        rate,
        format="WAV",
        subtype="PCM_16",
    )
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims width x height (CRC fixed), to test header-first checks."""
    data = bytearray(_png(1, 1))
    ihdr = 8 + 8  # signature, length+type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def test_good_image_and_audio_decode(tmp_path):
    img = load_image(_png(5, 7))
    assert img.size == (5, 7) and img.mode == "RGB"
    path = tmp_path / "a.wav"
    path.write_bytes(_wav(0.25))
    samples, rate = load_audio(path)
    assert rate == 16000 and samples.shape == (1, 4000) and samples.dtype == np.float32


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty"),
        (b"GIF89a-not-really", "not a recognised image"),
        (b"hello world, this is text", "not a recognised image"),
    ],
)
def test_bad_images(data, problem):
    with pytest.raises(InputError, match=problem) as err:
        load_image(data, name="upload.png")
    assert "upload.png" in str(err.value)


def test_truncated_image():
    data = _png(64, 64)
    with pytest.raises(InputError, match="corrupt or truncated|not a recognised"):
        load_image(data[: len(data) // 2])


def test_pixel_cap_is_checked_from_the_header():
    bomb = _png_claiming(60_000, 60_000)  # 3.6 gigapixels claimed by a ~70-byte file
    with pytest.raises(InputError, match="pixel limit"):
        load_image(bomb, Limits(max_pixels=40_000_000))
    with pytest.raises(InputError, match="pixel limit"):
        load_image(_png(100, 100), Limits(max_pixels=9_999))


def test_byte_cap(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_png(32, 32))
    with pytest.raises(InputError, match="byte limit") as err:
        load_image(path, Limits(max_bytes=10))
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_audio(tmp_path / "nope.wav")


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "no 'data' chunk"),
        (b"definitely not audio at all" * 10, "not a recognised audio"),
    ],
)
def test_bad_audio(data, problem):
    with pytest.raises(InputError, match=problem):
        load_audio(data, name="clip.wav")


def test_truncated_wav_is_refused():
    data = _wav(1.0)
    with pytest.raises(InputError, match="truncated WAV"):
        load_audio(data[: len(data) // 2])


def test_duration_cap():
    with pytest.raises(InputError, match="second limit"):
        load_audio(_wav(2.0), Limits(max_audio_seconds=1.0))


def test_text_validation():
    assert load_text("  seven ") == "seven"
    with pytest.raises(InputError, match="empty text"):
        load_text("   ")
    with pytest.raises(InputError, match="character limit"):
        load_text("x" * 50, Limits(max_text_chars=10))
    with pytest.raises(InputError, match="expected a string"):
        load_text(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [44100, 22050, 8000])
def test_audio_is_resampled_as_torchaudio_resamples_it(rate: int) -> None:
    """The resampling filter is built once per rate pair and reused; the samples are exactly
    what torchaudio's resample gives, on the first clip and on the next."""
    import torch
    import torchaudio.functional as AF
    from spaner.encoders.decode import load_audio_mono

    for seconds in (0.5, 1.3):
        t = np.arange(int(rate * seconds)) / rate
        wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3000 * t)).astype(
            np.float32
        )
        buf = io.BytesIO()
        sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
        got = load_audio_mono(buf.getvalue(), 16000)
        want = AF.resample(torch.from_numpy(wave), rate, 16000)
        assert got.shape == want.shape and torch.equal(got, want)


def test_an_odd_sample_rate_is_read_as_the_nearest_multiple_of_50_hz() -> None:
    """11127 Hz and 44101 Hz share almost no factor with 16 kHz; resampled as they are, the
    filter alone would take seconds to minutes per clip. They are read at 11150 / 44100 Hz."""
    from spaner.encoders.decode import load_audio_mono, resampling_rate

    assert resampling_rate(44100, 16000) == 44100 and resampling_rate(8000, 16000) == 8000
    assert resampling_rate(11127, 16000) == 11150 and resampling_rate(44101, 16000) == 44100
    assert resampling_rate(22254, 16000) == 22250 and resampling_rate(7, 16000) == 7
    buf = io.BytesIO()
    sf.write(buf, np.zeros(44101, np.float32), 44101, format="WAV", subtype="FLOAT")
    assert abs(load_audio_mono(buf.getvalue(), 16000).numel() - 16000) <= 1  # one second
