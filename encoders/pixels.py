"""Image preprocessing as tensor operations, so that it can run on the encoder's device.

An image encoder whose preprocessing is "resize the shorter side to ``size`` (bicubic,
antialiased), centre-crop ``size`` x ``size``, scale to [0, 1], normalise by ``mean``/``std``"
(CLIP's, and the EfficientNet encoder's ``crop`` mode) describes it as a :class:`PixelPlan`.
The streaming embed path (:mod:`spaner.model.streaming`) then moves ``uint8`` pixels to the
device (pinned, asynchronously) and runs :func:`transform` there, instead of one PIL resize
per image on one CPU thread. On a CUDA device, baseline JPEG files are decoded there too
(:func:`decode_jpegs`, nvJPEG through torchvision); every other file, and any JPEG the device
refuses (CMYK, progressive on old nvJPEG, truncated), is decoded by Pillow with the same
limits as :func:`~spaner.encoders.decode.load_image`.

torchvision's antialiased bicubic resize of a tensor follows PIL's filter; the features
agree with the PIL path to within bf16's tolerance (``tests/encoders/test_pixels.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spaner.errors import InputError

from .decode import DEFAULT_LIMITS, Limits

__all__ = [
    "PixelPlan",
    "plan_from_open_clip",
    "to_uint8",
    "transform",
    "jpeg_header",
    "decode_jpegs",
    "gpu_jpeg_available",
]


@dataclass(frozen=True)
class PixelPlan:
    """Shorter side to ``size`` (bicubic, antialiased), centre crop ``size``², /255, normalise."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def plan_from_open_clip(preprocess: object) -> PixelPlan | None:
    """The plan of an open_clip image transform (a ``Compose`` of Resize(bicubic, int size),
    CenterCrop, convert, ToTensor, Normalize), or None when it is anything else (then the
    encoder keeps its own PIL path)."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 3:
        return None
    middle = {getattr(s, "__name__", type(s).__name__) for s in steps[2:-1]}
    if not middle <= {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}:
        return None
    resize, crop, norm = steps[0], steps[1], steps[-1]
    if not (isinstance(resize, Resize) and isinstance(crop, CenterCrop)):
        return None
    if not isinstance(norm, Normalize) or resize.interpolation != InterpolationMode.BICUBIC:
        return None
    size = resize.size if isinstance(resize.size, int) else None
    if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1:
        size = int(resize.size[0])
    crop_size = tuple(crop.size)
    if size is None or crop_size != (size, size) or resize.max_size is not None:
        return None
    return PixelPlan(size, tuple(float(x) for x in norm.mean), tuple(float(x) for x in norm.std))


def to_uint8(img: object) -> torch.Tensor:
    """An RGB PIL image as a ``[3, H, W]`` uint8 tensor (no copy of the pixels beyond one)."""
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {arr.shape}")
    return torch.from_numpy(arr).permute(2, 0, 1)


def _resize_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """One ``[3, H, W]`` float image: shorter side to ``size``, centre crop ``size``²."""
    from torchvision.transforms.v2 import functional as F

    h, w = int(img.shape[-2]), int(img.shape[-1])
    if min(h, w) != size:  # torchvision's Resize(int): the longer side is truncated, as PIL's
        nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
        img = F.resize(img, [nh, nw], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    return F.center_crop(img, [size, size])


def transform(images: Sequence[torch.Tensor], plan: PixelPlan) -> torch.Tensor:
    """``[B, 3, size, size]`` float32 on the images' device from ``[3, H, W]`` uint8 tensors.

    Images of one shape are resized together in one call (a folder of camera photos is one
    call per batch)."""
    if not images:
        raise ValueError("no images to transform")
    device = images[0].device
    out = torch.empty(len(images), 3, plan.size, plan.size, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault((int(img.shape[-2]), int(img.shape[-1])), []).append(i)
    for idx in groups.values():
        stack = torch.stack([images[i] for i in idx]).float()
        # PIL resizes 8-bit images and rounds each result back to 8 bits; so do we
        resized = _resize_crop(stack, plan.size).round_().clamp_(0, 255)
        out[idx] = resized
    mean = torch.tensor(plan.mean, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(plan.std, device=device).view(1, 3, 1, 1) * 255.0
    return out.sub_(mean).div_(std)


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers


def _sof(data: bytes) -> tuple[int, int, int, int] | None:
    """(marker, height, width, components) from a JPEG's frame header, walking the marker
    segments (a few steps, no decoding); None when the structure is not what JPEG says."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF:
            if pos + 10 > n:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return marker, height, width, data[pos + 9]
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def jpeg_header(data: bytes, limits: Limits = DEFAULT_LIMITS, label: str = "<bytes>") -> bool:
    """True when ``data`` is a whole JPEG (ending in its end-of-image marker) the device
    decoder can take as RGB (baseline or progressive Huffman; 3-channel YCbCr or 1-channel
    grey), within ``limits``. Reads the frame header only (no Pillow: this runs per file on
    the worker threads, and holds the GIL). Raises InputError for an image over the pixel
    limit (the same words as :func:`~spaner.encoders.decode.load_image`); anything else
    unusual returns False, and Pillow decodes the file (and names its problem)."""
    if data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return False  # not JPEG, or no end marker (truncated): Pillow decides and names it
    sof = _sof(data)
    if sof is None:
        return False
    marker, height, width, components = sof
    if width * height > limits.max_pixels:
        raise InputError(
            label,
            f"image is {width}x{height} = {width * height} pixels, over the "
            f"{limits.max_pixels}-pixel limit",
        )
    # baseline (C0), extended (C1) and progressive (C2) Huffman; not lossless or arithmetic
    return marker in (0xC0, 0xC1, 0xC2) and components in (1, 3) and width > 0 and height > 0


def gpu_jpeg_available(device: torch.device) -> bool:
    """True when torchvision can decode JPEG on ``device`` (a CUDA device with nvJPEG)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except ImportError:  # pragma: no cover - torchvision always has it
        return False
    return True


def decode_jpegs(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG ``datas`` on ``device`` as ``[3, H, W]`` uint8 RGB; None where the device
    refused an image (the caller decodes it with Pillow, which names the problem). One bad
    file never drops the others: a failing batch is decoded again image by image."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not datas:
        return []
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    try:
        out = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
        return list(out)
    except Exception:  # noqa: BLE001 - one bad image: isolate it
        pass
    result: list[torch.Tensor | None] = []
    for t in tensors:
        try:
            result.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
        except Exception:  # noqa: BLE001 - Pillow decodes it and names the problem
            result.append(None)
    return result
