"""Exact engines (float32, transposed, row-split, fp16/bf16 two-stage) agree; copies follow writes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from spaner.index import EmbeddingSpace, FaissConfig, Item, create_store
from spaner.index.exact import (
    ENGINES,
    ExactSearcher,
    bf16_matmul_is_native,
    half,
    searcher,
    topk_inner_product,
    topk_single_thread,
    topk_split,
    topk_transposed,
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
    v6, i6 = topk_two_stage(x, torch.from_numpy(x).half(), q, 10, candidates=12, block_rows=700)
    xt = torch.from_numpy(x).T.contiguous()
    v7, i7 = topk_transposed(xt, q, 10)
    t_single = [topk_transposed(xt, q[j : j + 1], 10) for j in range(len(q))]
    v8 = np.concatenate([o[0] for o in t_single])
    i8 = np.concatenate([o[1] for o in t_single])
    with ThreadPoolExecutor(2) as pool:
        v3, i3 = topk_split(x, q, 10, pool, 3)
    singles_st = [topk_single_thread(x, q[j : j + 1], 10) for j in range(len(q))]
    v5 = np.concatenate([o[0] for o in singles_st])
    i5 = np.concatenate([o[1] for o in singles_st])
    # one query at a time takes the matvec path of the two-stage engine
    xb = torch.from_numpy(x).bfloat16()
    singles = [topk_two_stage(x, xb, q[j : j + 1], 10, candidates=16) for j in range(len(q))]
    v4, i4 = np.concatenate([o[0] for o in singles]), np.concatenate([o[1] for o in singles])
    for v, i in ((v2, i2), (v3, i3), (v4, i4), (v5, i5), (v6, i6), (v7, i7), (v8, i8)):
        assert v.shape == i.shape == (40, 10) and i.dtype == np.int64
        np.testing.assert_allclose(v, ref_v, atol=1e-5)
        same = (i == ref_i) | np.isclose(v, ref_v, atol=1e-6)  # ties may swap places
        assert same.all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nq", [1, 3])
def test_two_stage_widens_when_candidates_cannot_prove_the_top_k(dtype, nq) -> None:
    # 300 near-copies of one vector: their half-precision scores are all within the error
    # bound of the k-th, so 40 candidates cannot contain every possible top-k row -> the
    # engine widens (4x candidates, then float32) until it can prove the top-k.
    rng = np.random.default_rng(7)
    base = unit(1, 64, seed=8)
    x = np.concatenate([base + 1e-4 * rng.standard_normal((300, 64)), unit(3000, 64, seed=9)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = np.concatenate([base, unit(nq - 1, 64, seed=10)]).astype(np.float32)
    ref_v, ref_i = topk_inner_product(x, q, 10)
    v, i = topk_two_stage(x, torch.from_numpy(x).to(dtype), q, 10, candidates=40)
    np.testing.assert_allclose(v, ref_v, atol=1e-6)
    # the near-copies tie to within a float32 ulp: any of them may fill the top-k, but only
    # rows whose exact score reaches the k-th
    exact = (x[i] * q[:, None]).sum(-1)
    assert (exact >= ref_v[:, -1:] - 1e-6).all()
    assert (i[0] < 300).all()


def test_half_engines_are_withheld_when_the_kernel_breaks_the_error_bound(monkeypatch) -> None:
    monkeypatch.setattr(half, "_BOUND_OK", {})
    monkeypatch.setattr(searcher, "bf16_matmul_is_native", lambda: True)
    assert half.bf16_error_within_bound(48)  # torch accumulates bf16 in float32
    assert half.mirror_error_within_bound(torch.float16, 48)
    s = ExactSearcher()
    assert "bf16" in s.candidates(16, 100_000, 10, 48)
    assert "fp16" in s.candidates(1, 100_000, 10, 48)
    real_mv = torch.mv
    monkeypatch.setattr(half, "_BOUND_OK", {})
    monkeypatch.setattr(  # a kernel off by 0.02 (e.g. accumulating in bf16)
        torch, "mv", lambda a, b: real_mv(a, b) + 0.02
    )
    assert not half.bf16_error_within_bound(48)
    assert not half.mirror_error_within_bound(torch.float16, 48)
    assert "bf16" not in s.candidates(16, 100_000, 10, 48)
    assert "fp16" not in s.candidates(1, 100_000, 10, 48)
    assert "bf16" in s.candidates(16, 100_000, 10)  # no dimension given: not checked


def test_mirror_eps_bounds_the_observed_error() -> None:
    # the bound is a proof for unit vectors; check it holds with room on adversarial-ish data
    x = torch.from_numpy(np.concatenate([unit(2000, 512, seed=11), clustered(2000, 512)]))
    q = x[::97]
    ref = q @ x.T
    for dtype in (torch.bfloat16, torch.float16):
        err = float(((q.to(dtype) @ x.to(dtype).T).float() - ref).abs().max())
        assert err <= half.mirror_eps(dtype, 512)
    assert (
        half.mirror_eps(torch.float16, 512) < half.mirror_eps(torch.bfloat16, 512) / 7
    )  # fp16's 3 extra mantissa bits: 8x tighter, minus the accumulation term


def test_searcher_measures_once_per_bucket_and_keeps_results() -> None:
    x = unit(20000, 32, seed=3)
    s = ExactSearcher()
    for b in (1, 16, 16, 1, 13):
        q = x[:b]
        np.testing.assert_array_equal(s.search(x, q, 5)[1][:, 0], np.arange(b))
    assert set(s.choices) <= {1, 16}
    assert all(v in ENGINES for v in s.choices.values())
    if not bf16_matmul_is_native():
        assert "bf16" not in s.candidates(16, len(x), 5)
    forced = ExactSearcher({"cpu": "torch"})
    assert forced.candidates(64, len(x), 5) == ["torch"]
    s.close()


def test_searcher_choice_follows_measured_times_and_explores(monkeypatch) -> None:
    """Fake clock: each engine 'costs' what ``cost`` says; the choice follows changes."""
    clock = [0.0]
    cost = {"torch": 3.0, "split": 2.0, "single": 5.0, "bf16": 4.0}
    ran: list[str] = []
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def runner(self, engine, matrix, queries, k):
        def run():
            clock[0] += cost[engine]
            ran.append(engine)
            return topk_inner_product(matrix, queries, k)

        return run

    monkeypatch.setattr(ExactSearcher, "_runner", runner)
    monkeypatch.setattr(
        ExactSearcher, "candidates", lambda self, b, n, k, dim=None: ["torch", "split", "bf16"]
    )
    x = unit(3000, 16, seed=5)
    s = ExactSearcher(explore_every=4)
    for _ in range(12):  # sampling: one engine per call, in turn, once untimed, then 3 timings
        assert s.search(x, x[:1], 3)[1][0, 0] == 0
    assert ran == ["torch", "split", "bf16"] * 4
    assert s.choices == {1: "split"}
    ran.clear()
    for _ in range(30):
        s.search(x, x[:1], 3)
    # round robin, the next exploration 4 x (time ratio of the one just explored) calls later:
    # torch (1.5x slower) at calls 4 and 18, bf16 (2x slower) at 10 and 24
    assert [i + 1 for i, e in enumerate(ran) if e != "split"] == [4, 10, 18, 24]
    cost["split"] = 10.0  # the machine got busy for this engine
    for _ in range(40):
        s.search(x, x[:1], 3)
    assert s.choices == {1: "torch"}
    ran.clear()
    for _ in range(12):  # a new bucket is sampled on its own
        s.search(x, x[:2], 3)
    assert sorted(ran) == ["bf16"] * 4 + ["split"] * 4 + ["torch"] * 4
    assert s.choices[2] == "torch"
    s.search(np.concatenate([x, x, x]), x[:1], 3)  # matrix grew 3x: timings start over
    assert set(s.choices) == {1}


def test_bf16_mirror_is_built_only_when_that_engine_runs() -> None:
    x = unit(3000, 16, seed=6)
    s = ExactSearcher()
    run = s._runner("bf16", x, x[:2], 3)
    assert s._bf16 is None  # offering the engine (every call) must not convert the matrix
    np.testing.assert_array_equal(run()[1][:, 0], [0, 1])
    mirror = s._bf16
    assert mirror is not None and mirror.dtype == torch.bfloat16
    run()
    assert s._bf16 is mirror  # reused, not rebuilt
    s.reset()
    assert s._bf16 is None


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


@pytest.mark.parametrize("engine", ["fp16", "transposed"])
def test_copies_are_extended_on_append_and_dropped_on_other_changes(engine) -> None:
    x = unit(4000, 32, seed=12)
    s = ExactSearcher({"cpu": engine})

    def copy() -> torch.Tensor:
        return s._mirrors[torch.float16] if engine == "fp16" else s._xt[:, : s._xt_n].T

    np.testing.assert_array_equal(s.search(x[:3000], x[:2], 5)[1][:, 0], [0, 1])
    first = copy().clone()
    assert len(first) == 3000
    s.reset(appended=True)  # 1000 rows appended
    v, i = s.search(x, x[3500:3502], 5)
    np.testing.assert_array_equal(i[:, 0], [3500, 3501])  # the new rows are searched
    grown = copy()
    assert len(grown) == 4000 and torch.equal(grown[:3000], first)
    want = torch.from_numpy(x).half() if engine == "fp16" else torch.from_numpy(x)
    assert torch.equal(grown, want)
    s.reset()  # e.g. a delete compacted the rows: the copy is rebuilt, not extended
    assert not s._mirrors and s._xt is None
    y = x[::-1].copy()
    np.testing.assert_array_equal(s.search(y, y[:2], 5)[1][:, 0], [0, 1])
    assert torch.equal(
        copy(), torch.from_numpy(y).half() if engine == "fp16" else torch.from_numpy(y)
    )
    s.close()


def test_copies_are_offered_only_within_the_memory_budget() -> None:
    assert "transposed" in ExactSearcher().candidates(1, 100_000, 10, 512)
    small = ExactSearcher(copy_budget=100_000 * 512 * 4 - 1)
    assert "transposed" not in small.candidates(1, 100_000, 10, 512)
    assert "fp16" in small.candidates(1, 100_000, 10, 512)  # a 2-byte copy still fits
    tiny = ExactSearcher(copy_budget=100_000 * 512 * 2 - 1)
    assert "fp16" not in tiny.candidates(1, 100_000, 10, 512)
    assert "bf16" not in tiny.candidates(64, 100_000, 10, 512)
    assert "transposed" not in ExactSearcher().candidates(64, 100_000, 10, 512)  # a batch
