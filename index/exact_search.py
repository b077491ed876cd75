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
below that threshold is recomputed in float32. The mirror costs 2 bytes per dimension.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
    "topk_split",
]

_NEG_INF = float("-inf")
_ENGINE_BY_DEVICE: dict[str, str] = {"cpu": "torch", "cuda": "faiss"}
#: Bound on |bf16 score - float32 score| for unit vectors: 3 roundings of 2^-8 (+ margin).
BF16_EPS = 3.05 / 256
#: Smallest batch sent to the two-stage bf16 engine (one query is a memory-bound matvec,
#: where bf16 does not help on the CPUs measured).
BF16_MIN_BATCH = 2
_BF16_NATIVE: bool | None = None


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


class ExactSearcher:
    """Exact top-k over one (changing) matrix, choosing the engine by measurement.

    Candidates: ``torch`` (float32 matmul + top-k), ``split`` (the same over row slices on a
    small thread pool: helps the memory-bound single-query matvec) and, for batches on CPUs
    with native bf16, ``bf16`` (the exact two-stage engine, which wins once the matrix
    outgrows the caches). The first call of each batch-size bucket (powers of two) runs every
    candidate twice, interleaved, and remembers the fastest until the matrix size changes by
    more than 2x. Results are the same whichever engine answers. ``table``
    (``{"cpu": "torch"}``, ``{"cpu:16": "bf16"}``) forces a choice.
    """

    def __init__(self, table: dict[str, str] | None = None) -> None:
        self.table = table if table is not None else {}
        self.choices: dict[int, str] = {}
        self._calibrated_n = 0
        self._bf16: torch.Tensor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.threads = max(1, torch.get_num_threads())

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
        if engine == "bf16":
            mirror = self._mirror(matrix)
            return lambda: topk_two_stage(matrix, mirror, queries, k)
        if engine == "split":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="spaner-exact")
            pool = self._pool
            return lambda: topk_split(matrix, queries, k, pool, self.threads)
        return lambda: topk_inner_product(matrix, queries, k)

    def candidates(self, batch: int, n: int, k: int) -> list[str]:
        """Engines worth timing for this call (one means no choice to make)."""
        forced = self.table.get(f"cpu:{batch}") or self.table.get("cpu")
        if forced in ("torch", "bf16", "split"):
            return [forced]
        if n <= 2 * max(64, 4 * k) * self.threads:
            return ["torch"]
        out = ["torch"]
        if self.threads > 1:
            out.append("split")
        if batch >= BF16_MIN_BATCH and bf16_matmul_is_native():
            out.append("bf16")
        return out

    def search(
        self, matrix: np.ndarray, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(matrix)
        cands = self.candidates(len(queries), n, k)
        if len(cands) == 1:
            return self._runner(cands[0], matrix, queries, k)()
        if not self._calibrated_n // 2 <= n <= 2 * self._calibrated_n:
            self.choices.clear()
            self._calibrated_n = n
        bucket = _bucket(len(queries))
        chosen = self.choices.get(bucket)
        if chosen is not None:
            return self._runner(chosen, matrix, queries, k)()
        runs = {name: self._runner(name, matrix, queries, k) for name in cands}
        best = dict.fromkeys(runs, float("inf"))
        out = None
        for _ in range(2):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                out = fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        winner = min(best, key=best.__getitem__)
        self.choices[bucket] = winner
        if "bf16" not in self.choices.values():
            self._bf16 = None  # free the mirror while nothing uses it
        return out


def _bucket(batch: int) -> int:
    return min(1 << (batch - 1).bit_length(), 1024)
