"""Exact inner-product top-k over a float32 matrix, with an optional row mask or subset.

On CPU, torch's matmul (MKL/oneDNN sgemm, multi-threaded even for one query) followed by
``torch.topk`` beats ``faiss.IndexFlatIP`` at every batch size on the machines measured (see
BENCHMARKS.md), so it is the default engine; :func:`choose_exact_engine` keeps the choice in
one place and :func:`calibrate` re-measures it on the running machine. The matrix is used
zero-copy (``torch.from_numpy``).

On CPUs with native bfloat16 matrix units (AMX / AVX512-BF16), batches of queries go through
:func:`topk_two_stage`: a bfloat16 matmul over a bf16 mirror of the matrix picks candidates,
and the float32 vectors rescore them. It stays *exact*: for unit vectors the bf16 score is
within ``BF16_EPS`` of the float32 one (inputs and output each round with relative error
2^-8, and ``sum |q_i x_i| <= |q| |x| = 1``), so every true top-k row has a bf16 score at
least ``(k-th bf16 score) - 2 * BF16_EPS``; a query whose candidate list does not reach
below that threshold is recomputed in float32. The mirror costs 2 bytes per dimension. A
single query is a memory-bound matrix-vector product, and reading the bf16 mirror moves half
the bytes of the float32 matrix, so the two-stage engine also answers single queries (with
``torch.mv``) when it measures faster. :func:`bf16_error_within_bound` checks once that the
running torch build keeps its bf16 error inside ``BF16_EPS`` (float32 accumulation); if it
does not, the bf16 engine is never used.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss
import numpy as np
import torch

__all__ = [
    "topk_inner_product",
    "topk_two_stage",
    "choose_exact_engine",
    "calibrate",
    "bf16_matmul_is_native",
    "BF16_EPS",
    "ExactSearcher",
    "AdaptiveChoice",
    "batch_bucket",
    "topk_split",
    "topk_single_thread",
    "bf16_error_within_bound",
    "ENGINES",
]

log = logging.getLogger(__name__)
_NEG_INF = float("-inf")
_ENGINE_BY_DEVICE: dict[str, str] = {"cpu": "torch", "cuda": "faiss"}
#: Bound on |bf16 score - float32 score| for unit vectors: 3 roundings of 2^-8 (+ margin).
BF16_EPS = 3.05 / 256
#: Smallest batch sent to the two-stage bf16 engine (a single query runs it as a matvec).
BF16_MIN_BATCH = 1
#: The first call of a batch-size bucket times every candidate engine this many rounds
#: (at least 2; further rounds only while the calibration has taken under the budget) and
#: keeps the one with the best (minimum) time: minima are robust to load spikes.
CALIBRATION_ROUNDS = 5
CALIBRATION_BUDGET_S = 0.5
#: Engine names :class:`ExactSearcher` knows (``table`` values that force one).
ENGINES = ("torch", "split", "single", "bf16")
_BF16_NATIVE: bool | None = None
_BF16_BOUND_OK: dict[int, bool] = {}


def bf16_matmul_is_native() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    global _BF16_NATIVE
    if _BF16_NATIVE is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
                flags = next((ln for ln in fh if ln.startswith("flags")), "").split()
        except OSError:
            flags = []
        _BF16_NATIVE = "amx_bf16" in flags or "avx512_bf16" in flags
    return _BF16_NATIVE


def bf16_error_within_bound(dim: int, samples: int = 512) -> bool:
    """True when torch's bf16 matmul and matvec on this machine stay within ``BF16_EPS`` of
    float32 on unit vectors of ``dim`` (i.e. accumulate in float32, as the exactness proof
    assumes), with a 2x margin. Checked once per dimension on seeded random vectors and on
    near-duplicates (large scores, the worst case for output rounding)."""
    ok = _BF16_BOUND_OK.get(dim)
    if ok is None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(samples, dim, generator=g)
        x[: samples // 2] = x[0] + 0.01 * x[: samples // 2]  # near-duplicates of row 0
        x = x / x.norm(dim=1, keepdim=True)
        q = x[:8].clone()
        ref = q @ x.T
        xb, qb = x.bfloat16(), q.bfloat16()
        err_mm = float(((qb @ xb.T).float() - ref).abs().max())
        err_mv = max(float((torch.mv(xb, qb[i]).float() - ref[i]).abs().max()) for i in range(8))
        ok = max(err_mm, err_mv) <= BF16_EPS / 2
        if not ok:
            log.warning(
                "bf16 matmul error %.4g exceeds the bound %.4g: bf16 exact engine disabled",
                max(err_mm, err_mv),
                BF16_EPS / 2,
            )
        _BF16_BOUND_OK[dim] = ok
    return ok


def choose_exact_engine(
    batch: int, device: str = "cpu", table: dict[str, str] | None = None
) -> str:
    """Which exact engine answers a batch of ``batch`` queries on ``device``.

    ``table`` maps ``"<device>"`` or ``"<device>:<batch>"`` to ``"torch"`` or ``"faiss"``
    (as produced by :func:`calibrate`); the measured default is torch on CPU.
    """
    table = table or {}
    chosen = table.get(f"{device}:{batch}") or table.get(device)
    return chosen or _ENGINE_BY_DEVICE.get(device, "torch")


def topk_inner_product(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    mask: np.ndarray | None = None,
    subset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``matrix`` by inner product with each query.

    ``mask`` (bool per row) excludes rows; ``subset`` (row indices) restricts the search to
    those rows and is faster when few rows are allowed. Returns ``(scores, rows)`` of shape
    ``[b, k']`` with ``k' = min(k, candidates)``; excluded rows never appear.
    """
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    if subset is not None:
        if len(subset) == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        rows_t = torch.from_numpy(subset)
        scores = q @ x.index_select(0, rows_t).T
        kk = min(k, len(subset))
        vals, idx = torch.topk(scores, kk, dim=1)
        return vals.numpy(), subset[idx.numpy()]
    scores = q @ x.T
    n_cand = len(matrix)
    if mask is not None:
        scores.masked_fill_(~torch.from_numpy(mask), _NEG_INF)
        n_cand = int(mask.sum())
    kk = min(k, n_cand)
    vals, idx = torch.topk(scores, kk, dim=1)
    return vals.numpy(), idx.numpy().astype(np.int64, copy=False)


def topk_two_stage(
    matrix: np.ndarray,
    matrix_bf16: torch.Tensor,
    queries: np.ndarray,
    k: int,
    candidates: int = 64,
    block_rows: int = 65536,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (same rows as :func:`topk_inner_product`) via a bf16 candidate stage.

    ``matrix_bf16`` is ``torch.from_numpy(matrix).bfloat16()``; rows of both must be unit
    vectors (the error bound assumes it). See the module docstring for why it is exact.
    """
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    cand = max(candidates, 4 * k)
    if cand >= len(matrix):
        return topk_inner_product(matrix, queries, k)
    qb = q.bfloat16()
    n = len(matrix)
    if len(q) == 1:  # a matvec: one pass over the bf16 mirror, no score block to tile
        av, ai = torch.topk(torch.mv(matrix_bf16, qb[0]), cand)
        thr = float(av[k - 1]) - 2 * BF16_EPS
        if float(av[-1]) >= thr:  # a row outside the candidates may still be in the top-k
            return topk_inner_product(matrix, queries, k)
        exact = torch.mv(x.index_select(0, ai), q[0])
        vals, j = torch.topk(exact, k)
        return vals[None].numpy(), ai[j][None].numpy().astype(np.int64, copy=False)
    if n <= block_rows:
        av, ai = torch.topk(qb @ matrix_bf16.T, cand, dim=1)
    else:  # row blocks keep the score block in cache; merge the per-block candidates
        vals, rows = [], []
        for lo in range(0, n, block_rows):
            hi = min(n, lo + block_rows)
            v, i = torch.topk(qb @ matrix_bf16[lo:hi].T, min(cand, hi - lo), dim=1)
            vals.append(v)
            rows.append(i + lo)
        v_all, i_all = torch.cat(vals, dim=1), torch.cat(rows, dim=1)
        av, j = torch.topk(v_all, cand, dim=1)
        ai = torch.gather(i_all, 1, j)
    threshold = av[:, k - 1].float() - 2 * BF16_EPS
    complete = av[:, -1].float() < threshold  # every row above the threshold is a candidate
    exact = torch.einsum("bd,bcd->bc", q, x[ai])
    vals, j = torch.topk(exact, k, dim=1)
    rows = torch.gather(ai, 1, j)
    if not bool(complete.all()):
        redo = (~complete).nonzero().flatten()
        fv, fi = torch.topk(q[redo] @ x.T, k, dim=1)
        vals[redo], rows[redo] = fv, fi
    return vals.numpy(), rows.numpy().astype(np.int64, copy=False)


def topk_single_thread(
    matrix: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` for one query on the calling thread only: FAISS' SIMD inner products
    (``fvec_inner_products_ny``, no OpenMP) + ``argpartition``. Slower than a multi-threaded
    matvec on an idle machine, but it never waits at a thread barrier, which on a machine
    with more runnable threads than cores is what dominates a small multi-threaded matvec."""
    if len(queries) != 1 or not matrix.flags.c_contiguous or matrix.dtype != np.float32:
        return topk_inner_product(matrix, queries, k)
    q = np.ascontiguousarray(queries[0], dtype=np.float32)
    n, d = matrix.shape
    scores = np.empty(n, np.float32)
    faiss.fvec_inner_products_ny(
        faiss.swig_ptr(scores), faiss.swig_ptr(q), faiss.swig_ptr(matrix), d, n
    )
    kk = min(k, n)
    top = np.argpartition(scores, n - kk)[n - kk :] if kk < n else np.arange(n)
    top = top[np.argsort(-scores[top], kind="stable")]
    return scores[top][None], top.astype(np.int64)[None]


def topk_split(
    matrix: np.ndarray, queries: np.ndarray, k: int, pool: ThreadPoolExecutor, parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` with the rows split in ``parts`` slices searched on ``pool`` threads
    and merged (torch releases the GIL). One query is a memory-bound matvec that torch runs
    on fewer cores than the machine has; slicing the rows keeps every core streaming."""
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    n = len(matrix)
    bounds = [(n * i) // parts for i in range(parts + 1)]

    def part(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = bounds[i], bounds[i + 1]
        v, idx = torch.topk(q @ x[lo:hi].T, min(k, hi - lo), dim=1)
        return v, idx + lo

    got = list(pool.map(part, range(parts)))
    vals = torch.cat([g[0] for g in got], dim=1)
    rows = torch.cat([g[1] for g in got], dim=1)
    kk = min(k, vals.shape[1])
    v, j = torch.topk(vals, kk, dim=1)
    return v.numpy(), torch.gather(rows, 1, j).numpy().astype(np.int64, copy=False)


def calibrate(
    matrix: np.ndarray,
    faiss_search: Callable[[np.ndarray, int], object],
    batches: tuple[int, ...] = (1, 16, 64),
    repeats: int = 3,
) -> dict[str, str]:
    """Time torch and FAISS exact search on ``matrix`` per batch size; return the faster map."""
    rng = np.random.default_rng(0)
    table: dict[str, str] = {}
    for b in batches:
        q = matrix[rng.integers(0, len(matrix), b)]
        times = {}
        for name, fn in (
            ("torch", lambda q: topk_inner_product(matrix, q, 10)),
            ("faiss", lambda q: faiss_search(q, 10)),
        ):
            fn(q)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(q)
            times[name] = time.perf_counter() - t0
        table[f"cpu:{b}"] = min(times, key=times.__getitem__)
    return table


class AdaptiveChoice:
    """Pick, per key (a batch-size bucket), the fastest of a few interchangeable ways of doing
    the same call, by measurement, and keep measuring.

    The first calls of a key take the options in turn until each has ``min_samples`` timings
    (real calls, so the timings include what a call pays on this machine between other work,
    such as waking idle OpenMP threads; :meth:`calibrate` instead times every option 2-5
    times within one call); afterwards :meth:`run` uses the option with the best recent time per
    query (median of its last ``window`` timings) and about every ``explore_every``-th call
    runs another option instead (round robin; an option r times slower than the best only
    every ``r * explore_every`` calls), so the choice follows load changes on a shared
    machine. Options must return the same results: only their speed differs.
    """

    def __init__(self, window: int = 5, explore_every: int = 32, min_samples: int = 2) -> None:
        self.window = window
        self.explore_every = explore_every
        self.min_samples = min_samples
        self._times: dict[int, dict[str, deque[float]]] = {}
        self._calls: dict[int, int] = {}
        self._next: dict[int, int] = {}  # call number of the next exploration
        self._explored: dict[int, int] = {}

    @property
    def choices(self) -> dict[int, str]:
        """Key -> the option currently preferred there."""
        return {key: self._best(t) for key, t in self._times.items()}

    def clear(self) -> None:
        self._times.clear()
        self._calls.clear()
        self._next.clear()
        self._explored.clear()

    @staticmethod
    def _best(times: dict[str, deque[float]]) -> str:
        return min(times, key=lambda e: statistics.median(times[e]) if times[e] else math.inf)

    def run(self, key: int, runs: dict[str, Callable[[], Any]], per: int = 1) -> Any:
        """Run one of ``runs`` (name -> thunk) for ``key``; ``per`` = queries in the call."""
        times = self._times.get(key)
        if times is None or set(times) != set(runs):
            times = self._times[key] = {name: deque(maxlen=self.window) for name in runs}
            self._calls[key] = 0
            self._next[key] = self.explore_every
            self._explored[key] = 0
        calls = self._calls[key] = self._calls[key] + 1
        name = best = self._best(times)
        fewest = min(runs, key=lambda e: len(times[e]))
        if len(times[fewest]) < self.min_samples:
            # still sampling: one option per call, in turn, timed in real calls (a loop of
            # back-to-back runs would hide what a call pays to wake idle OpenMP threads)
            name = fewest
            self._next[key] = calls + self.explore_every
        elif self.explore_every and calls >= self._next[key]:
            others = [e for e in runs if e != best]
            name = others[self._explored[key] % len(others)]
            self._explored[key] += 1
            # an option k times slower is re-timed k times less often (at most 16x less):
            # exploring then costs under 1/explore_every of the best option's time
            ratio = statistics.median(times[name]) / max(statistics.median(times[best]), 1e-12)
            self._next[key] = calls + int(self.explore_every * min(max(ratio, 1.0), 16.0))
        t0 = time.perf_counter()
        out = runs[name]()
        times[name].append((time.perf_counter() - t0) / per)
        return out

    def calibrate(self, key: int, runs: dict[str, Callable[[], Any]], per: int = 1) -> Any:
        names = list(runs)
        times = {name: deque(maxlen=self.window) for name in names}
        out = None
        t_start = time.perf_counter()
        for r in range(CALIBRATION_ROUNDS):
            if r >= 2 and time.perf_counter() - t_start > CALIBRATION_BUDGET_S:
                break
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotating order
                t0 = time.perf_counter()
                out = runs[name]()
                times[name].append((time.perf_counter() - t0) / per)
        self._times[key] = times
        self._calls[key] = 0
        self._next[key] = self.explore_every
        self._explored[key] = 0
        log.debug("calibrated %s for key %d: %s", names, key, times)
        return out


class ExactSearcher:
    """Exact top-k over one (changing) matrix, choosing the engine by measurement.

    Candidates: ``torch`` (float32 matmul + top-k), ``split`` (the same over row slices on a
    small thread pool: helps the memory-bound single-query matvec), ``single`` for single
    queries (one thread, no OpenMP barrier: wins on a machine with more runnable threads than
    cores) and, on CPUs with native bf16, ``bf16`` (the exact two-stage engine, which wins
    once the matrix outgrows the caches; for single queries it halves the bytes a matvec
    reads). Results are the same whichever engine answers. The choice, per batch-size bucket
    (powers of two), is an :class:`AdaptiveChoice`; its timings are dropped when the matrix
    size changes by more than 2x. ``table`` (``{"cpu": "torch"}``, ``{"cpu:16": "bf16"}``)
    forces a choice.
    """

    def __init__(self, table: dict[str, str] | None = None, explore_every: int = 32) -> None:
        self.table = table if table is not None else {}
        self.chooser = AdaptiveChoice(explore_every=explore_every)
        self._calibrated_n = 0
        self._bf16: torch.Tensor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.threads = max(1, torch.get_num_threads())

    @property
    def choices(self) -> dict[int, str]:
        """Bucket -> the engine currently preferred there (by recent timings)."""
        return self.chooser.choices

    def reset(self) -> None:
        """The matrix changed: drop the bf16 mirror (rebuilt on the next batch that uses it)."""
        self._bf16 = None

    def close(self) -> None:
        self._bf16 = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _mirror(self, matrix: np.ndarray) -> torch.Tensor:
        if self._bf16 is None or self._bf16.shape[0] != len(matrix):
            self._bf16 = torch.from_numpy(matrix).bfloat16()
        return self._bf16

    def _runner(self, engine: str, matrix: np.ndarray, queries: np.ndarray, k: int):
        if engine == "bf16":  # the mirror is made when the engine runs, not when offered
            return lambda: topk_two_stage(matrix, self._mirror(matrix), queries, k)
        if engine == "split":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="spaner-exact")
            pool = self._pool
            return lambda: topk_split(matrix, queries, k, pool, self.threads)
        if engine == "single":
            return lambda: topk_single_thread(matrix, queries, k)
        return lambda: topk_inner_product(matrix, queries, k)

    def candidates(self, batch: int, n: int, k: int, dim: int | None = None) -> list[str]:
        """Engines worth timing for this call (one means no choice to make). ``bf16`` is
        offered only on CPUs with native bf16 and when ``dim`` (if given) passes
        :func:`bf16_error_within_bound`."""
        forced = self.table.get(f"cpu:{batch}") or self.table.get("cpu")
        if forced in ENGINES:
            return [forced]
        if n <= 2 * max(64, 4 * k) * self.threads:
            return ["torch"]
        out = ["torch"]
        if self.threads > 1:
            out.append("split")
        if batch == 1:
            out.append("single")
        if (
            batch >= BF16_MIN_BATCH
            and bf16_matmul_is_native()
            and (dim is None or bf16_error_within_bound(dim))
        ):
            out.append("bf16")
        return out

    def search(
        self, matrix: np.ndarray, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        n, b = len(matrix), len(queries)
        cands = self.candidates(b, n, k, matrix.shape[1])
        if len(cands) == 1:
            return self._runner(cands[0], matrix, queries, k)()
        if not self._calibrated_n // 2 <= n <= 2 * self._calibrated_n:
            self.chooser.clear()
            self._calibrated_n = n
        runs = {name: self._runner(name, matrix, queries, k) for name in cands}
        # the bf16 mirror, once made, stays until the matrix changes (it is re-timed now and
        # then, and rebuilding it for that would cost more than the search)
        return self.chooser.run(batch_bucket(b), runs, per=b)


def batch_bucket(batch: int) -> int:
    return min(1 << (batch - 1).bit_length(), 1024)
