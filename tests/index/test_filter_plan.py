"""The filter-strategy choice, including the GPU path (simulated: no GPU needed)."""

from __future__ import annotations

import pytest
from spaner.index.filter_plan import (
    GPU_MAX_K,
    MASK_MIN_FRACTION,
    SUBSET_MAX,
    Strategy,
    plan_search,
    widening_schedule,
)


def plan(**kw):
    base = dict(k=10, n_total=100_000, n_allowed=None, exact_index=True, on_gpu=False)
    base.update(kw)
    return plan_search(**base)


def test_unfiltered():
    assert plan().strategy is Strategy.EXACT
    assert plan(exact_index=False).strategy is Strategy.ANN
    assert plan(on_gpu=True).strategy is Strategy.ANN  # GPU flat index
    assert plan(n_total=0).strategy is Strategy.EMPTY
    assert plan(n_total=3).fetch_k == 3


def test_exact_cpu_masks_or_gathers():
    assert plan(n_allowed=int(100_000 * MASK_MIN_FRACTION)).strategy is Strategy.EXACT_MASK
    assert plan(n_allowed=int(100_000 * MASK_MIN_FRACTION) - 1).strategy is Strategy.EXACT_SUBSET
    assert plan(n_allowed=0).strategy is Strategy.EMPTY
    assert plan(n_allowed=4).fetch_k == 4


def test_ann_cpu_uses_selector_unless_tiny():
    assert plan(exact_index=False, n_allowed=SUBSET_MAX).strategy is Strategy.EXACT_SUBSET
    assert plan(exact_index=False, n_allowed=SUBSET_MAX + 1).strategy is Strategy.ANN_SELECTOR


@pytest.mark.parametrize("exact", [True, False])
def test_gpu_never_relies_on_selectors_on_the_gpu(exact):
    # half allowed: over-fetch on the GPU and post-filter
    p = plan(exact_index=exact, on_gpu=True, n_allowed=50_000)
    assert p.strategy is Strategy.ANN_POST_FILTER
    assert p.fetch_k == 40  # k * oversample(2) / selectivity(0.5)
    # selective filter whose over-fetch would pass the GPU k cap: CPU copy with a selector
    p = plan(exact_index=exact, on_gpu=True, n_allowed=5_000, k=100)
    assert p.strategy is Strategy.ANN_SELECTOR
    # tiny allowed set: brute force over those vectors
    assert plan(exact_index=exact, on_gpu=True, n_allowed=100).strategy is Strategy.EXACT_SUBSET


def test_widening_schedule_grows_to_cap():
    assert list(widening_schedule(40, 100_000)) == [40, 160, 640, GPU_MAX_K]
    assert list(widening_schedule(40, 500)) == [40, 160, 500]
    assert list(widening_schedule(5000, 100_000)) == [GPU_MAX_K]
    assert list(widening_schedule(10, 10)) == [10]


def test_k_must_be_positive():
    with pytest.raises(ValueError):
        plan(k=0)
