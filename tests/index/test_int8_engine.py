"""The int8 exact engine: exact top-k, its error bound, its copy, and every engine in a store."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from spaner.index import EmbeddingSpace, FaissConfig, Item, create_store
from spaner.index.exact import (
    ENGINES,
    CandidateHint,
    ExactSearcher,
    Int8Copy,
    int8_eps,
    topk_inner_product,
    topk_int8,
)
from spaner.index.exact import int8 as int8_engine
from store_helpers import unit

pytestmark = pytest.mark.skipif(
    not int8_engine.int8_available(), reason="this torch build has no quantized CPU engine"
)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Tight clusters: many near-ties, the hard case for a candidate stage."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)).astype(np.float32)
    x = centers[rng.integers(0, 20, n)] + 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_top_k(v, i, ref_v, ref_i) -> None:
    assert v.shape == i.shape == ref_v.shape and i.dtype == np.int64
    np.testing.assert_allclose(v, ref_v, atol=1e-5)
    assert ((i == ref_i) | np.isclose(v, ref_v, atol=1e-6)).all()  # ties may swap places


@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("dim", [64, 512])
def test_int8_returns_the_exact_top_k(data, dim) -> None:
    x = unit(6000, dim, seed=1) if data == "random" else clustered(6000, dim)
    q = x[:40] + 0.05 * unit(40, dim, seed=2)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    copy = Int8Copy(x, block_rows=2500)  # 3 blocks, the last one partial
    ref_v, ref_i = topk_inner_product(x, q, 10)
    assert_same_top_k(*topk_int8(x, copy, q, 10), ref_v, ref_i)  # a batch
    singles = [topk_int8(x, copy, q[j : j + 1], 10) for j in range(len(q))]
    v = np.concatenate([s[0] for s in singles])
    i = np.concatenate([s[1] for s in singles])
    assert_same_top_k(v, i, ref_v, ref_i)  # the single-query path


@pytest.mark.parametrize("nq", [1, 3])
def test_int8_widens_when_candidates_cannot_prove_the_top_k(nq) -> None:
    # 300 near-copies of one vector score within the int8 bound of each other: 40 candidates
    # cannot prove which 10 are the top, so the engine widens (4x, then float32)
    rng = np.random.default_rng(7)
    base = unit(1, 64, seed=8)
    x = np.concatenate([base + 1e-3 * rng.standard_normal((300, 64)), unit(3000, 64, seed=9)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = np.concatenate([base, unit(nq - 1, 64, seed=10)]).astype(np.float32)
    hint = CandidateHint()
    ref_v, ref_i = topk_inner_product(x, q, 10)
    v, i = topk_int8(x, Int8Copy(x), q, 10, candidates=40, hint=hint)
    assert_same_top_k(v, i, ref_v, ref_i)
    # the call had to widen, and a candidate stage (not the float32 fallback, which would
    # teach nothing) proved it: the next call starts there
    assert 160 <= hint.value < len(x) // 2


def test_int8_eps_counts_the_smallest_quantization_scale() -> None:
    # PyTorch raises a query scale below 6.1e-5 to 6.1e-5: a query spanning almost nothing
    # still moves by half of that step per component
    # (a query range of levels * 6.1e-5 gives that step: 127 levels on CPUs without VNNI)
    levels = 127 if int8_engine._INT8_REDUCE_RANGE else 255
    tiny = int8_eps(4096, 0.0, 1e-6)
    assert tiny == pytest.approx(int8_eps(4096, 0.0, levels * 6.1e-5))
    assert tiny > 0.5 * 6.1e-5 * 64


def test_int8_eps_bounds_the_observed_error() -> None:
    x = np.concatenate([unit(2000, 512, seed=11), clustered(2000, 512)])
    copy = Int8Copy(x, block_rows=1500)
    xt = torch.from_numpy(x)
    for q in (xt[::97], xt[5:6], xt[3000:3001]):
        approx = torch.cat([copy.scores(q, lo, hi) for lo, hi, _ in copy.blocks], dim=1)
        err = float((approx - q @ xt.T).abs().max())
        eps = int8_eps(512, copy.err, int8_engine._q_range(q))
        assert err <= eps
        assert eps < 0.05  # the bound is tight enough to be useful at 512 dimensions
    assert 0.005 < copy.err < 0.02  # half an 8-bit step per component, over 512 components


def test_int8_engine_is_withheld_when_the_kernel_breaks_the_bound(monkeypatch) -> None:
    monkeypatch.setattr(int8_engine, "_BOUND_OK", {})
    assert int8_engine.int8_error_within_bound(48)
    assert "int8" in ExactSearcher().candidates(1, 100_000, 10, 48)
    real = Int8Copy.scores
    monkeypatch.setattr(int8_engine, "_BOUND_OK", {})
    monkeypatch.setattr(  # a kernel off by 0.05 (e.g. saturating its integer sums)
        Int8Copy, "scores", lambda self, q, lo, hi: real(self, q, lo, hi) + 0.05
    )
    assert not int8_engine.int8_error_within_bound(48)
    assert "int8" not in ExactSearcher().candidates(1, 100_000, 10, 48)
    assert "int8" not in ExactSearcher().candidates(64, 100_000, 10, 48)


def test_int8_copy_is_extended_block_by_block() -> None:
    x = unit(3700, 32, seed=12)
    copy = Int8Copy(x[:2500], block_rows=1000)
    assert [(lo, hi) for lo, hi, _ in copy.blocks] == [(0, 1000), (1000, 2000), (2000, 2500)]
    full = copy.blocks[:2]
    copy.extend(x)
    assert [(lo, hi) for lo, hi, _ in copy.blocks] == [
        (0, 1000),
        (1000, 2000),
        (2000, 3000),
        (3000, 3700),
    ]
    assert all(a[2] is b[2] for a, b in zip(full, copy.blocks[:2], strict=False))  # kept
    fresh = Int8Copy(x, block_rows=1000)
    q = torch.from_numpy(x[:4])
    for lo, hi, _ in fresh.blocks:
        assert torch.equal(copy.scores(q, lo, hi), fresh.scores(q, lo, hi))
    assert copy.err == pytest.approx(fresh.err)
    with pytest.raises(ValueError, match="not a block"):
        copy.scores(q, 0, 500)


def test_searcher_extends_the_int8_copy_on_append_and_drops_it_otherwise() -> None:
    x = unit(4000, 32, seed=13)
    s = ExactSearcher({"cpu": "int8"})
    np.testing.assert_array_equal(s.search(x[:3000], x[:2], 5)[1][:, 0], [0, 1])
    first = s._int8
    assert first is not None and len(first) == 3000
    s.reset(appended=True)
    np.testing.assert_array_equal(s.search(x, x[3500:3502], 5)[1][:, 0], [3500, 3501])
    assert s._int8 is first and len(first) == 4000
    s.reset()
    assert s._int8 is None
    y = x[::-1].copy()
    np.testing.assert_array_equal(s.search(y, y[:1], 5)[1][:, 0], [0])
    assert s._int8 is not first
    s.close()


def test_int8_copy_is_offered_only_within_the_memory_budget() -> None:
    size = 100_000 * (512 + int8_engine.INT8_ROW_OVERHEAD)  # codes + scales and packing
    assert "int8" in ExactSearcher(copy_budget=size).candidates(1, 100_000, 10, 512)
    small = ExactSearcher(copy_budget=size - 1)
    assert "int8" not in small.candidates(1, 100_000, 10, 512)
    assert "int8" not in small.candidates(64, 100_000, 10, 512)


def test_candidate_hint_rises_on_widening_and_decays_when_calm() -> None:
    h = CandidateHint(calm=3)
    h.update(32, 128)
    assert h.value == 128
    h.update(128, None)  # a float32 fallback teaches nothing
    assert h.value == 128
    for _ in range(2):
        h.update(128, 128)
    assert h.value == 128
    h.update(128, 128)  # the third calm call in a row
    assert h.value == 64


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_in_a_store_matches_faiss_through_adds_and_deletes(tmp_path, engine) -> None:
    dim = 48
    store = create_store(tmp_path / engine, EmbeddingSpace("e", dim), config=FaissConfig())
    store.exact.table = {"cpu": engine}
    x = unit(5000, dim, seed=14)
    ids = store.add(x[:4000], [Item("text") for _ in range(4000)])
    q = unit(16, dim, seed=15)

    def check() -> None:  # against a FAISS flat index over the store's current rows
        row_ids, mat = store._flat_view()
        flat = faiss.IndexFlatIP(dim)
        flat.add(mat)
        for b in (1, 3, 16):
            want_v, want_rows = flat.search(q[:b], 10)
            got_v, got_ids = store.search_ids(q[:b], 10)
            np.testing.assert_allclose(got_v, want_v, atol=1e-5)
            same = (got_ids == row_ids[want_rows]) | np.isclose(got_v, want_v, atol=1e-6)
            assert same.all(), (engine, b)

    check()
    store.add(x[4000:], [Item("image") for _ in range(1000)])  # append: copies are extended
    check()
    store.delete([int(i) for i in ids[:500]])  # delete: copies are rebuilt
    assert store.count() == 4500
    check()
    store.close()
