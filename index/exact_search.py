"""Exact inner-product top-k over a float32 matrix, with an optional row mask or subset.

On CPU, torch's matmul (MKL/oneDNN sgemm, multi-threaded even for one query) followed by
``torch.topk`` beats ``faiss.IndexFlatIP`` at every batch size on the machines measured (see
BENCHMARKS.md), so it is the default engine; :func:`choose_exact_engine` keeps the choice in
one place and :func:`calibrate` re-measures it on the running machine. The matrix is used
zero-copy (``torch.from_numpy``), so the store keeps one copy of its vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["topk_inner_product", "choose_exact_engine", "calibrate"]

_NEG_INF = float("-inf")
_ENGINE_BY_DEVICE: dict[str, str] = {"cpu": "torch", "cuda": "faiss"}


def choose_exact_engine(
    batch: int, device: str = "cpu", table: dict[str, str] | None = None
) -> str:
    """Which exact engine answers a batch of ``batch`` queries on ``device``.

    ``table`` maps ``"<device>"`` or ``"<device>:<batch>"`` to ``"torch"`` or ``"faiss"``
    (as produced by :func:`calibrate`); the measured default is torch on CPU.
    """
    table = table or {}
    return (
        table.get(f"{device}:{batch}")
        or table.get(device)
        or _ENGINE_BY_DEVICE.get(device, "torch")
    )


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
