"""Training-time augmentation of images, for the poses, sizes and strokes the few shots never show.

Each augmented copy of a training image draws, from a seeded generator, a random affine warp
(rotation, scale, shear, shift), an optional smooth elastic deformation (a Gaussian-filtered random
displacement field, as in Simard et al. 2003 for handwritten digits) and an optional change of
stroke thickness (a 3x3 grey-level erosion or dilation, blended in: thicker or thinner dark ink on a
light page). Every size is a fraction of the image's side, so the recipe is the same for an 8x8
glyph saved at 32x32 and for a photo. What a warp pulls in from outside the frame is filled with
the median colour of the image's outermost ring (a white page stays white, and ink touching the
edge is not smeared outwards).

The copies are encoded by the same frozen encoder and added to the training set with the label of
their source (:func:`spaner.training.augment.add_copies`); validation and test images are never augmented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ImageRecipe", "IMAGE_RECIPE", "augment_image", "background", "warp"]

#: the cache key of the recipe below; change it whenever the recipe changes
IMAGE_RECIPE = "image-aug-v1"

#: images are warped at most this many pixels on their longer side (bounds the cost on photos)
MAX_SIDE = 512


@dataclass(frozen=True)
class ImageRecipe:
    """Ranges of the random perturbation (sizes are fractions of the image side)."""

    rotate_deg: float = 12.0
    scale: float = 0.08
    shear: float = 0.12
    shift: float = 0.06
    elastic: float = 0.03  # RMS displacement; 0 = off
    elastic_smooth: float = 0.1  # Gaussian sigma of the displacement field
    elastic_p: float = 0.5
    stroke: float = 0.6  # largest blend weight of the erosion/dilation; 0 = off
    stroke_p: float = 0.5


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` (reflect-padded), ``sigma`` in pixels."""
    radius = max(1, int(round(3 * sigma)))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def background(pixels: torch.Tensor) -> torch.Tensor:
    """Per-channel median of the outermost ring of ``pixels`` ``[C, H, W]``: the colour that
    fills what a warp pulls in from outside the frame (white for ink on a page)."""
    ring = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, 1:-1, 0], pixels[:, 1:-1, -1]], dim=1)
    return ring.median(dim=1).values


def warp(
    pixels: torch.Tensor, rng: np.random.Generator, recipe: ImageRecipe = ImageRecipe()
) -> torch.Tensor:
    """One random perturbation of ``pixels`` ``[C, H, W]`` (floats in [0, 1]), same shape."""
    c, h, w = pixels.shape
    angle = math.radians(rng.uniform(-recipe.rotate_deg, recipe.rotate_deg))
    scale = 1.0 + rng.uniform(-recipe.scale, recipe.scale)
    shear = rng.uniform(-recipe.shear, recipe.shear)
    tx, ty = rng.uniform(-recipe.shift, recipe.shift, 2) * 2.0  # grid coordinates span 2
    cos, sin = math.cos(angle), math.sin(angle)
    a = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) / scale
    theta = torch.tensor([[a[0, 0], a[0, 1], tx], [a[1, 0], a[1, 1], ty]], dtype=torch.float32)
    grid = F.affine_grid(theta[None], [1, c, h, w], align_corners=False)
    elastic = recipe.elastic > 0 and rng.random() < recipe.elastic_p
    if elastic:
        field = torch.from_numpy(rng.standard_normal((1, 2, h, w)).astype(np.float32))
        field = _gaussian_blur(field, max(recipe.elastic_smooth * min(h, w), 0.5))
        field = field / (field.pow(2).mean().sqrt() + 1e-8) * recipe.elastic * 2.0
        grid = grid + field.permute(0, 2, 3, 1)
    fill = background(pixels)[:, None, None]
    out = fill + F.grid_sample(
        pixels[None] - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    if recipe.stroke > 0 and rng.random() < recipe.stroke_p:
        weight = rng.uniform(-recipe.stroke, recipe.stroke)
        # weight > 0: thicker dark strokes (grey-level erosion, the 3x3 minimum); < 0: thinner
        morph = -F.max_pool2d(-out, 3, 1, 1) if weight > 0 else F.max_pool2d(out, 3, 1, 1)
        out = (1 - abs(weight)) * out + abs(weight) * morph
    return out[0].clamp(0.0, 1.0)


def augment_image(image, rng: np.random.Generator, recipe: ImageRecipe = ImageRecipe()):
    """One random perturbation of a Pillow image (see the module docstring); a Pillow image of
    the same size and mode (RGB or L) comes back."""
    from PIL import Image

    mode = image.mode if image.mode in ("RGB", "L") else "RGB"
    img = image.convert(mode)
    size = img.size
    if max(size) > MAX_SIDE:
        ratio = MAX_SIDE / max(size)
        img = img.resize(
            (max(1, round(size[0] * ratio)), max(1, round(size[1] * ratio))), Image.BILINEAR
        )
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    out = warp(torch.from_numpy(np.ascontiguousarray(a)), rng, recipe).numpy()
    out = np.rint(out * 255.0).astype(np.uint8)
    result = Image.fromarray(out[0] if mode == "L" else out.transpose(1, 2, 0), mode=mode)
    return result.resize(size, Image.BILINEAR) if result.size != size else result
