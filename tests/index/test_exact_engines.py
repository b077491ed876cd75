"""Exact engines (float32, row-split, bf16 two-stage) agree; the metadata cache follows writes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from spaner.index import EmbeddingSpace, FaissConfig, Item, create_store
from spaner.index.exact_search import (
    ExactSearcher,
    bf16_matmul_is_native,
    topk_inner_product,
    topk_split,
    topk_two_stage,
)
from store_helpers import unit


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Tight clusters: many near-ties, the hard case for a bf16 candidate stage."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)).astype(np.float32)
    x = centers[rng.integers(0, 20, n)] + 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("data", ["random", "clustered"])
def test_two_stage_and_split_return_the_exact_top_k(data) -> None:
    x = unit(5000, 64, seed=1) if data == "random" else clustered(5000)
    q = x[:40] + 0.01 * unit(40, 64, seed=2)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    ref_v, ref_i = topk_inner_product(x, q, 10)
    v2, i2 = topk_two_stage(x, torch.from_numpy(x).bfloat16(), q, 10, candidates=16, block_rows=700)
    with ThreadPoolExecutor(2) as pool:
        v3, i3 = topk_split(x, q, 10, pool, 3)
    for v, i in ((v2, i2), (v3, i3)):
        np.testing.assert_allclose(v, ref_v, atol=1e-5)
        same = (i == ref_i) | np.isclose(v, ref_v, atol=1e-6)  # ties may swap places
        assert same.all()


def test_searcher_measures_once_per_bucket_and_keeps_results() -> None:
    x = unit(20000, 32, seed=3)
    s = ExactSearcher()
    for b in (1, 16, 16, 1, 13):
        q = x[:b]
        np.testing.assert_array_equal(s.search(x, q, 5)[1][:, 0], np.arange(b))
    assert set(s.choices) <= {1, 16}
    assert all(v in ("torch", "split", "bf16") for v in s.choices.values())
    if not bf16_matmul_is_native():
        assert "bf16" not in s.candidates(16, len(x), 5)
    forced = ExactSearcher({"cpu": "torch"})
    assert forced.candidates(64, len(x), 5) == ["torch"]
    s.close()


def test_store_hits_follow_deletes_and_readds(tmp_path) -> None:
    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    x = unit(50, 16, seed=4)
    ids = store.add(x, [Item("image", concept="a") for _ in range(50)])
    first = store.search(x[:1], 3)[0]
    assert first[0].id == ids[0] and first[0].metadata["concept"] == "a"
    first[0].metadata["concept"] = "mutated"  # callers get copies, never the cache itself
    assert store.search(x[:1], 1)[0][0].metadata["concept"] == "a"
    store.delete([int(ids[0])])
    assert all(h.id != ids[0] for h in store.search(x[:1], 50)[0])
    store.add(x[:1], [Item("text", concept="b")], ids=[int(ids[0])])
    hit = store.search(x[:1], 1)[0][0]
    assert (
        hit.id == ids[0] and hit.metadata["modality"] == "text" and hit.metadata["concept"] == "b"
    )
    store.close()
