"""The device exact engine returns the CPU engines' exact top-k (same code on the CPU here,
with tiny blocks so blocking and widening run), follows appends, and is what a store uses
when a torch device is chosen."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from spaner.index import EmbeddingSpace, FaissConfig, Filter, Item, create_store
from spaner.index import faiss_store as faiss_store_module
from spaner.index.exact import (
    DeviceExactSearcher,
    device_kernel_ok,
    order_keys,
    resolve_search_device,
    topk_inner_product,
)
from store_helpers import unit

pytestmark = pytest.mark.precision("fp32")

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: (mirror dtype, rows per block, queries per block): the CPU runs of the CUDA code path
SETTINGS = [
    (torch.float16, None, None),
    (torch.float16, 257, 7),
    (torch.bfloat16, 700, None),
    (torch.float32, 1000, 3),
]


def canonical(
    x: np.ndarray, q: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The tie rule written out: float64 products rounded to float32, best score first, the
    lower row first among equal scores."""
    s = (q.astype(np.float64) @ x.astype(np.float64).T).astype(np.float32)
    rows = np.arange(len(x)) if allowed is None else np.flatnonzero(allowed)
    out_v, out_i = [], []
    for line in s[:, rows]:
        order = np.lexsort((rows, -line))[:k]
        out_v.append(line[order])
        out_i.append(rows[order])
    return np.array(out_v, np.float32), np.array(out_i, np.int64)


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Tight clusters: many near-ties, adversarial for a half-precision candidate stage."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim)).astype(np.float32)
    x = centers[rng.integers(0, 20, n)] + 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def grid(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors of 16 entries +-1/4: every score is a multiple of 1/16, exact in every
    precision, so whole groups of rows tie exactly; a quarter of the rows are duplicates."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), np.float32)
    for row in x:
        row[rng.choice(dim, 16, replace=False)] = rng.choice([-0.25, 0.25], 16)
    x[rng.integers(0, n, n // 4)] = x[rng.integers(0, n, n // 4)]
    return x


def near(x: np.ndarray, b: int, seed: int) -> np.ndarray:
    q = x[:b] + 0.01 * unit(b, x.shape[1], seed=seed)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("dtype", "block_rows", "query_block"), SETTINGS)
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_device_engine_returns_the_cpu_top_k(data, dtype, block_rows, query_block) -> None:
    x = unit(5000, 64, seed=1) if data == "random" else clustered(5000)
    q = near(x, 40, seed=2)
    eng = DeviceExactSearcher("cpu", dtype, block_rows=block_rows, query_block=query_block)
    v, i = eng.search(x, q, 10)
    ref_v, ref_i = topk_inner_product(x, q, 10)
    assert v.shape == i.shape == (40, 10) and v.dtype == np.float32 and i.dtype == np.int64
    np.testing.assert_allclose(v, ref_v, rtol=0, atol=1e-6)
    if data == "random":  # no two scores within float32 error of each other: same rows
        np.testing.assert_array_equal(i, ref_i)
    else:  # near-ties may swap places in the float32 reference, never in the tie rule
        assert ((i == ref_i) | np.isclose(v, ref_v, rtol=0, atol=1e-6)).all()
        can_v, can_i = canonical(x, q, 10)
        np.testing.assert_array_equal(i, can_i)
        np.testing.assert_array_equal(v, can_v)


@pytest.mark.parametrize(("dtype", "block_rows", "query_block"), SETTINGS)
def test_exact_ties_follow_the_tie_rule(dtype, block_rows, query_block) -> None:
    x = grid(3000)
    q = np.concatenate([x[:5], grid(20, seed=3)])
    eng = DeviceExactSearcher("cpu", dtype, block_rows=block_rows, query_block=query_block)
    v, i = eng.search(x, q, 25)
    ref_v, _ = topk_inner_product(x, q, 25)
    np.testing.assert_array_equal(v, ref_v)  # the same scores, bit for bit
    can_v, can_i = canonical(x, q, 25)
    np.testing.assert_array_equal(i, can_i)  # and among ties the lower rows, in order
    assert (np.diff(v, axis=1) <= 0).all()


@pytest.mark.parametrize("b", [1, 3])
def test_near_copies_widen_the_candidates_until_the_top_k_is_proved(b) -> None:
    # 300 near-copies of one row: their fp16 scores all lie within the error bound of the
    # k-th, so the first 32 candidates cannot prove the top-k and the engine widens
    rng = np.random.default_rng(7)
    base = unit(1, 64, seed=8)
    x = np.concatenate([base + 1e-4 * rng.standard_normal((300, 64)), unit(3000, 64, seed=9)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = np.concatenate([base, unit(b - 1, 64, seed=10)]).astype(np.float32)
    eng = DeviceExactSearcher("cpu", block_rows=500)
    v, i = eng.search(x, q, 10)
    can_v, can_i = canonical(x, q, 10)
    np.testing.assert_array_equal(i, can_i)
    np.testing.assert_array_equal(v, can_v)
    assert (i[0] < 300).all()
    (hint,) = eng._hints.values()
    assert hint.value > 32  # it widened, and learned the count that proved the query


def test_masks_subsets_and_k_beyond_the_allowed_rows() -> None:
    x, q = clustered(4000, seed=4), near(clustered(4000, seed=4), 9, seed=5)
    eng = DeviceExactSearcher("cpu", block_rows=333, query_block=4)
    mask = np.random.default_rng(6).random(4000) < 0.3
    v, i = eng.search(x, q, 10, mask=mask)
    assert mask[i].all()
    can_v, can_i = canonical(x, q, 10, mask)
    np.testing.assert_array_equal(i, can_i)
    np.testing.assert_array_equal(v, can_v)
    ref_v, _ = topk_inner_product(x, q, 10, mask=mask)
    np.testing.assert_allclose(v, ref_v, rtol=0, atol=1e-6)

    subset = np.array([3999, 17, 2500, 17, 640, 1], np.int64)  # unsorted, a duplicate
    allowed = np.zeros(4000, bool)
    allowed[subset] = True
    v, i = eng.search(x, q, 50, subset=subset)
    assert v.shape == i.shape == (9, 5)  # k beyond the allowed rows: all of them
    can_v, can_i = canonical(x, q, 50, allowed)
    np.testing.assert_array_equal(i, can_i)
    np.testing.assert_array_equal(v, can_v)

    few = np.zeros(4000, bool)
    few[[5, 7]] = True
    assert eng.search(x, q, 10, mask=few)[1].shape == (9, 2)
    assert eng.search(x, q, 10, mask=np.zeros(4000, bool))[1].shape == (9, 0)
    assert eng.search(x, q, 10, subset=np.array([], np.int64))[1].shape == (9, 0)
    v, i = eng.search(x, q, 5000)  # k > n: every row, in order
    assert i.shape == (9, 4000) and (np.sort(i, axis=1) == np.arange(4000)).all()


def test_empty_matrix_bad_shapes_and_bad_arguments() -> None:
    eng = DeviceExactSearcher("cpu")
    v, i = eng.search(np.empty((0, 8), np.float32), unit(3, 8), 5)
    assert v.shape == i.shape == (3, 0)
    x = unit(100, 8)
    assert eng.search(x, np.empty((0, 8), np.float32), 5)[1].shape == (0, 5)
    with pytest.raises(ValueError, match="dimension 8"):
        eng.search(x, unit(2, 9), 5)
    with pytest.raises(ValueError, match="k must be positive"):
        eng.search(x, unit(2, 8), 0)
    with pytest.raises(ValueError, match="mask of 99 rows"):
        eng.search(x, unit(2, 8), 5, mask=np.ones(99, bool))
    with pytest.raises(ValueError, match="not both"):
        eng.search(x, unit(2, 8), 5, mask=np.ones(100, bool), subset=np.arange(3))


def test_vectors_longer_than_one_stay_exact() -> None:
    x = clustered(3000) * np.linspace(0.5, 4.0, 3000, dtype=np.float32)[:, None]
    q = near(clustered(3000), 6, seed=11) * 7.0
    v, i = DeviceExactSearcher("cpu", block_rows=400).search(x, q, 10)
    can_v, can_i = canonical(x, q, 10)
    np.testing.assert_array_equal(i, can_i)
    np.testing.assert_array_equal(v, can_v)


def test_copies_are_extended_on_append_and_rebuilt_on_other_changes() -> None:
    x = unit(4000, 32, seed=12)
    eng = DeviceExactSearcher("cpu", block_rows=512)
    np.testing.assert_array_equal(eng.search(x[:3000], x[:2], 1)[1][:, 0], [0, 1])
    first = eng._mirror.buf
    assert first.shape[0] == 3000 and first.dtype == torch.float16
    eng.reset(appended=True)
    np.testing.assert_array_equal(eng.search(x[:3500], x[3400:3402], 1)[1][:, 0], [3400, 3401])
    grown = eng._mirror.buf
    assert grown.shape[0] == 4500  # room for more appends
    assert torch.equal(grown[:3000], first)
    eng.reset(appended=True)
    np.testing.assert_array_equal(eng.search(x, x[3999:], 1)[1][:, 0], [3999])
    assert eng._mirror.buf.data_ptr() == grown.data_ptr()  # filled in place, not re-copied
    assert torch.equal(eng._mirror.buf[:4000], torch.from_numpy(x).half())
    eng.reset()
    assert eng._mirror is None
    y = unit(500, 32, seed=13)  # another matrix altogether
    np.testing.assert_array_equal(eng.search(y, y[:3], 1)[1][:, 0], [0, 1, 2])


def test_host_rescoring_path_matches() -> None:
    x, q = clustered(3000), near(clustered(3000), 10, seed=14)
    a = DeviceExactSearcher("cpu", block_rows=300).search(x, q, 10)
    b = DeviceExactSearcher("cpu", block_rows=300, float32_copy=False).search(x, q, 10)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_order_keys_sort_by_score_then_lower_row() -> None:
    s = torch.tensor([[0.5, -0.0, 0.0, -1.0, float("-inf"), 0.5, -2.5]])
    rows = torch.tensor([[9, 4, 3, 2, 1, 0, 8]])
    order = torch.argsort(order_keys(s, rows), dim=1, descending=True)
    assert rows[0, order[0]].tolist() == [0, 9, 3, 4, 2, 8, 1]


def test_search_device_resolution(monkeypatch, caplog) -> None:
    monkeypatch.delenv("SPANER_SEARCH_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_search_device(None, faiss_gpu=False) == "cuda"
    assert resolve_search_device(None, faiss_gpu=True) is None  # FAISS' GPU build first
    assert resolve_search_device(None, faiss_gpu=False, use_gpu=False) is None
    assert resolve_search_device("cuda:1", faiss_gpu=True) == "cuda:1"
    assert resolve_search_device("cpu", faiss_gpu=False) is None
    monkeypatch.setenv("SPANER_SEARCH_DEVICE", "cpu")
    assert resolve_search_device("cuda", faiss_gpu=False) is None
    monkeypatch.delenv("SPANER_SEARCH_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_search_device(None, faiss_gpu=False) is None
    with caplog.at_level(logging.WARNING):
        assert resolve_search_device("cuda", faiss_gpu=False) is None
    assert "no CUDA device" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert resolve_search_device("mps", faiss_gpu=False) is None
    assert "only cpu and cuda" in caplog.text


def test_store_searches_through_the_device_engine(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(faiss_store_module, "resolve_search_device", lambda *a, **kw: "cpu")
    space = EmbeddingSpace("d", 16)
    vecs = clustered(3000, dim=16, seed=15)
    items = [Item(modality="text", concept=f"c{j % 7}", source=str(j)) for j in range(3000)]
    on_device = create_store(tmp_path / "dev", space, config=FaissConfig(search_device="cuda"))
    monkeypatch.undo()
    on_cpu = create_store(tmp_path / "cpu", space, config=FaissConfig(search_device="cpu"))
    assert isinstance(on_device._device_exact, DeviceExactSearcher)
    assert on_cpu._device_exact is None
    for store in (on_device, on_cpu):
        store.add(vecs[:2000], items[:2000])
        store.add(vecs[2000:], items[2000:])  # an append: the mirror is extended
    q = near(vecs, 5, seed=16)
    calls = []
    search = on_device._device_exact.search
    monkeypatch.setattr(
        on_device._device_exact, "search", lambda *a, **kw: calls.append(kw) or search(*a, **kw)
    )
    for flt in (None, Filter(concept=["c1", "c2", "c3"]), Filter(concept=["c4"])):
        got, want = on_device.search(q, 12, filters=flt), on_cpu.search(q, 12, filters=flt)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=1e-6)
            assert {h.id for h in g} == {h.id for h in w}
    assert [("mask" in c and c["mask"] is not None) for c in calls] == [False, True, False]
    assert calls[2]["subset"] is not None
    on_device.close()
    on_cpu.close()


@CUDA
def test_cuda_engine_matches_the_cpu_run_of_the_same_code() -> None:  # pragma: no cover
    assert device_kernel_ok("cuda", torch.float16, 512)
    for x in (unit(200_000, 512, seed=17), clustered(200_000, dim=512, seed=18)):
        q = near(x, 64, seed=19)
        mask = np.random.default_rng(20).random(len(x)) < 0.5
        gpu = DeviceExactSearcher("cuda")
        eager = DeviceExactSearcher("cuda", cuda_graphs=False)
        cpu = DeviceExactSearcher("cpu", torch.float32)
        for kw in ({}, {"mask": mask}, {"subset": np.arange(0, len(x), 97)}):
            cv, ci = cpu.search(x, q, 10, **kw)
            for b in (64, 1):
                for eng in (gpu, eager):
                    gv, gi = eng.search(x, q[:b], 10, **kw)
                    np.testing.assert_array_equal(gi, ci[:b])
                    np.testing.assert_allclose(gv, cv[:b], rtol=0, atol=1e-6)
        assert gpu._graphs._graphs and not gpu._graphs.broken  # the unfiltered calls replayed
        assert not eager._graphs._graphs
        small = DeviceExactSearcher("cuda", block_rows=4096, query_block=16, memory_budget=1 << 24)
        np.testing.assert_array_equal(small.search(x, q, 10)[1], cpu.search(x, q, 10)[1])


@CUDA
def test_cuda_engine_widens_after_a_graphed_first_pass() -> None:  # pragma: no cover
    rng = np.random.default_rng(7)
    base = unit(1, 64, seed=8)
    x = np.concatenate([base + 1e-4 * rng.standard_normal((300, 64)), unit(30_000, 64, seed=9)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = np.concatenate([base, unit(2, 64, seed=10)]).astype(np.float32)
    eng = DeviceExactSearcher("cuda")
    for _ in range(3):  # the first call widens, the next start from the learned count
        v, i = eng.search(x, q, 10)
        can_v, can_i = canonical(x, q, 10)
        np.testing.assert_array_equal(i, can_i)
        np.testing.assert_allclose(v, can_v, rtol=0, atol=1e-6)
    assert eng._graphs._graphs and not eng._graphs.broken
