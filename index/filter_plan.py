"""Choosing how a (possibly filtered) search runs: a small pure function, unit-tested.

The engines differ in what they can do with a filter:

* the exact engine (a float32 matrix searched with torch matmul + top-k) applies a boolean
  mask, or gathers the allowed rows when few are allowed;
* FAISS on CPU honours an ``IDSelector`` in ``SearchParameters`` (IVF, HNSW, Flat);
* FAISS on GPU ignores id selectors and caps ``k`` (2048), so a filtered GPU search
  over-fetches and post-filters, widening geometrically until ``k`` allowed hits are found,
  and falls back to the CPU copy of the index (with a selector) past the GPU's ``k`` cap;
* when the allowed set is tiny, brute force over exactly those vectors is both exact and
  cheaper than any ANN probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Strategy",
    "SearchPlan",
    "plan_search",
    "widening_schedule",
    "MASK_MIN_FRACTION",
    "SUBSET_MAX",
    "GPU_MAX_K",
]

#: Below this fraction of allowed rows the exact engine gathers rows instead of masking.
MASK_MIN_FRACTION = 0.25
#: Allowed sets up to this size are searched by brute force over just those vectors.
SUBSET_MAX = 4096
#: FAISS GPU's largest supported k (and nprobe).
GPU_MAX_K = 2048


class Strategy(str, Enum):
    EMPTY = "empty"  # nothing can match
    EXACT = "exact"  # exact engine, no filter
    EXACT_MASK = "exact_mask"  # exact engine with a boolean row mask
    EXACT_SUBSET = "exact_subset"  # exact over the allowed vectors only
    ANN = "ann"  # FAISS ANN (or GPU flat), no filter
    ANN_SELECTOR = "ann_selector"  # FAISS on CPU with an IDSelector
    ANN_POST_FILTER = "ann_post_filter"  # over-fetch on GPU, post-filter, widen


@dataclass(frozen=True)
class SearchPlan:
    strategy: Strategy
    fetch_k: int  # how many candidates the first round asks the engine for


def plan_search(
    *,
    k: int,
    n_total: int,
    n_allowed: int | None,
    exact_index: bool,
    on_gpu: bool,
    oversample: float = 2.0,
) -> SearchPlan:
    """Pick the strategy for one search.

    ``n_allowed`` is the number of items passing the filter (None: no filter),
    ``exact_index`` says the store's index is exact (Flat) and so has a matrix mirror,
    ``on_gpu`` that the FAISS index searched is a GPU index.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    if n_total == 0 or n_allowed == 0:
        return SearchPlan(Strategy.EMPTY, 0)
    if n_allowed is None or n_allowed >= n_total:
        if exact_index and not on_gpu:
            return SearchPlan(Strategy.EXACT, min(k, n_total))
        return SearchPlan(Strategy.ANN, min(k, n_total, GPU_MAX_K if on_gpu else n_total))
    fetch = min(k, n_allowed)
    if exact_index and not on_gpu:
        if n_allowed / n_total >= MASK_MIN_FRACTION:
            return SearchPlan(Strategy.EXACT_MASK, fetch)
        return SearchPlan(Strategy.EXACT_SUBSET, fetch)
    if n_allowed <= SUBSET_MAX:
        return SearchPlan(Strategy.EXACT_SUBSET, fetch)
    if not on_gpu:
        return SearchPlan(Strategy.ANN_SELECTOR, fetch)
    first = math.ceil(k * oversample * n_total / n_allowed)
    if first > GPU_MAX_K:
        return SearchPlan(Strategy.ANN_SELECTOR, fetch)  # on the CPU copy
    return SearchPlan(Strategy.ANN_POST_FILTER, min(first, n_total))


def widening_schedule(
    first: int, n_total: int, *, factor: int = 4, cap: int = GPU_MAX_K
) -> Iterator[int]:
    """Candidate counts for successive post-filter rounds: ``first``, ×factor, … up to
    ``min(n_total, cap)``. When the last round still lacks ``k`` allowed hits the caller
    falls back to :attr:`Strategy.ANN_SELECTOR` on the CPU copy."""
    limit = min(n_total, cap)
    k = max(1, min(first, limit))
    while True:
        yield k
        if k >= limit:
            return
        k = min(k * factor, limit)
