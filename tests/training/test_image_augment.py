"""Training-time image augmentation: seeded, same size and mode, label-preserving, cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spaner.errors import ConfigError
from spaner.model.config import TrainConfig
from spaner.pipeline import Spaner
from spaner.training.augment import add_copies
from spaner.training.features import FeatureCache
from spaner.training.image_augment import ImageRecipe, augment_image, background

STILL = ImageRecipe(rotate_deg=0, scale=0, shear=0, shift=0, elastic=0, stroke=0)


def _digits(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as the digits data set saves them: 32x32, dark ink on white."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pick = np.concatenate([np.where(d.target == c)[0][:n_per_class] for c in range(10)])
    page = 255 - np.rint(d.images[pick] * 255 / 16).astype(np.uint8)
    return page.repeat(4, axis=1).repeat(4, axis=2), d.target[pick]


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def test_same_seed_same_copy_other_seed_other_copy() -> None:
    pages, _ = _digits(1)
    img = Image.fromarray(pages[3]).convert("RGB")
    a = augment_image(img, np.random.default_rng([0, 1, 2]))
    b = augment_image(img, np.random.default_rng([0, 1, 2]))
    c = augment_image(img, np.random.default_rng([0, 2, 2]))
    assert np.array_equal(_pixels(a), _pixels(b))
    assert not np.array_equal(_pixels(a), _pixels(c))
    assert not np.array_equal(_pixels(a), _pixels(img))


@pytest.mark.parametrize("mode,size", [("RGB", (32, 32)), ("L", (40, 24)), ("RGB", (900, 300))])
def test_copy_keeps_size_and_mode(mode: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    out = augment_image(img, np.random.default_rng(1))
    assert out.size == size and out.mode == mode


def test_still_recipe_is_the_identity() -> None:
    pages, _ = _digits(1)
    img = Image.fromarray(pages[7])
    out = augment_image(img, np.random.default_rng(0), STILL)
    assert np.abs(_pixels(out) - _pixels(img)).max() <= 1


def test_what_a_shift_pulls_in_is_the_page_not_the_edge_ink() -> None:
    page = np.full((32, 32), 255, np.uint8)
    page[:, 12:20] = 0  # a bar of ink from the top edge to the bottom edge
    img = Image.fromarray(page)
    assert background(torch.from_numpy(page[None] / 255.0)).item() == 1.0
    shifted = augment_image(
        img, np.random.default_rng(3), ImageRecipe(0, 0, 0, 0.25, elastic=0, stroke=0)
    )
    moved = _pixels(shifted)
    # the bar moved; the rows pulled in at the top or bottom are white, not a smeared bar
    assert moved.min() == 0
    assert (moved[0] == 255).all() or (moved[-1] == 255).all()


@pytest.mark.slow
def test_copies_keep_the_digit() -> None:
    """A 1-nearest-neighbour on 8x8 pixels, fitted on other originals, reads the augmented
    copies of a digit about as well as the digit itself: the recipe does not change the label."""
    pages, y = _digits(20)
    fit_x = pages[::2].reshape(-1, 8, 4, 8, 4).mean((2, 4)).reshape(len(pages[::2]), -1)
    fit_y = y[::2]
    test_pages, test_y = pages[1::2], y[1::2]

    def read(batch: list[np.ndarray]) -> np.ndarray:
        x = np.stack(batch).reshape(-1, 8, 4, 8, 4).mean((2, 4)).reshape(len(batch), -1)
        d = ((x[:, None].astype(float) - fit_x[None]) ** 2).sum(-1)
        return fit_y[d.argmin(1)]

    original = (read(list(test_pages)) == test_y).mean()
    copies = [
        _pixels(augment_image(Image.fromarray(p), np.random.default_rng([k, i])))
        for k in range(3)
        for i, p in enumerate(test_pages)
    ]
    augmented = (read(copies) == np.tile(test_y, 3)).mean()
    assert original >= 0.85
    assert augmented >= original - 0.15, (original, augmented)


def test_image_augment_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="image_augment"):
        TrainConfig(image_augment=-1).validate()


@pytest.mark.slow
def test_prepare_adds_labelled_cached_copies_of_training_images_only(
    paired_set: Path, tmp_path: Path
) -> None:
    sp = Spaner.from_profile(
        "tiny", modalities=["text", "image"], encoders={"text": "tiny-bert-text"}
    )
    plain = sp.prepare(paired_set, TrainConfig(shots=2, seed=0))
    cache = FeatureCache(tmp_path / "cache")
    cfg = TrainConfig(shots=2, seed=0, image_augment=3)
    data = sp.prepare(paired_set, cfg, cache)
    base, aug = plain.train.modalities["image"], data.train.modalities["image"]
    n = len(base)
    assert len(aug) == 4 * n
    assert aug.labels[:n].tolist() == base.labels.tolist()
    for k in range(3):  # the copies, source by source: same label and concept as their source
        rows = [n + 3 * j + k for j in range(n)]
        assert aug.labels[rows].tolist() == base.labels.tolist()
        assert [aug.ids[r] for r in rows] == [f"{i}#aug{k}" for i in base.ids]
        assert [aug.concepts[r] for r in rows] == list(base.concepts)
    assert not torch.equal(aug.items[n].tokens, base.items[0].tokens)
    assert len(data.val.modalities["image"]) == len(plain.val.modalities["image"])
    assert len(data.test.modalities["image"]) == len(plain.test.modalities["image"])
    assert len(data.train.modalities["text"]) == len(plain.train.modalities["text"])
    # a second run reads every copy from the cache and gets the same features
    calls = []
    enc = sp.encoders["image"]
    original_forward = enc.forward
    enc.forward = lambda batch: calls.append(1) or original_forward(batch)  # type: ignore[method-assign]
    again = sp.prepare(paired_set, cfg, cache).train.modalities["image"]
    enc.forward = original_forward  # type: ignore[method-assign]
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(aug.items, again.items, strict=True))
    assert calls == []  # nothing re-encoded


def test_add_copies_leaves_text_alone(paired_set: Path) -> None:
    sp = Spaner.from_profile(
        "tiny", modalities=["text", "image"], encoders={"text": "tiny-bert-text"}
    )
    data = sp.prepare(paired_set, TrainConfig(shots=2, seed=0))
    text = data.train.modalities["text"]
    assert add_copies(text, ["x"] * len(text), sp.encoders["text"], 3, 0) is text


def test_the_digits_profile_trains_with_image_copies_unless_told_otherwise() -> None:
    import argparse

    from spaner.cli.common import add_train_args, train_config
    from spaner.profiles import PROFILES

    p = argparse.ArgumentParser()
    add_train_args(p)
    augment = PROFILES["digits"].train["image_augment"]
    assert augment > 0
    assert PROFILES["offline"].train == {}
    assert train_config(p.parse_args([]), "digits").image_augment == augment
    off = train_config(p.parse_args(["--image-augment", "0"]), "digits")
    assert off.image_augment == 0
    assert train_config(p.parse_args([]), "offline").image_augment == 0
    assert train_config(p.parse_args([]), None).image_augment == 0
