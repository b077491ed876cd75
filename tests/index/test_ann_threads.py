"""ANN searches choose between FAISS' OpenMP team and one thread; results never change."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest
from spaner.index import EmbeddingSpace, FaissConfig, Item, create_store
from spaner.index.faiss_index import search_params, with_omp_threads
from store_helpers import unit


def test_with_omp_threads_is_scoped_to_the_call_and_the_thread() -> None:
    before = faiss.omp_get_max_threads()
    seen: list[int] = []

    def other_thread() -> None:
        seen.append(faiss.omp_get_max_threads())

    def inside() -> int:
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        return faiss.omp_get_max_threads()

    assert with_omp_threads(1, inside) == 1
    assert seen == [before]  # another thread keeps its own OpenMP setting
    assert faiss.omp_get_max_threads() == before
    with pytest.raises(ZeroDivisionError):
        with_omp_threads(1, lambda: 1 / 0)
    assert faiss.omp_get_max_threads() == before  # restored on errors too


def test_ann_search_times_both_thread_options_and_matches_raw_faiss(tmp_path) -> None:
    cfg = FaissConfig(factory="IVF16,Flat", nprobe=4)
    store = create_store(tmp_path / "s", EmbeddingSpace("t", 32), config=cfg)
    x = unit(1200, 32, seed=11)
    store.add(x, [Item("text") for _ in range(len(x))])
    assert store.index.is_trained
    params = search_params(store.index, store.info, nprobe=4, ef_search=0, ids=None)
    q = unit(64, 32, seed=12)
    for b in (1, 1, 8, 1, 8):
        for s in range(0, 64, b * 4):
            want_d, want_i = store.index.search(q[s : s + b], 5, params=params)
            got_d, got_i = store.search_ids(q[s : s + b], 5)
            np.testing.assert_array_equal(got_i, want_i)
            np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
    want_d, want_i = store.index.search(q, 5, params=params)
    got_d, got_i = store.search_ids(q, 5)  # 64 queries: always FAISS' team, not timed
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
    if faiss.omp_get_max_threads() > 1:
        assert set(store._ann_choice.choices) == {1, 8}
        assert set(store._ann_choice.choices.values()) <= {"omp", "one_thread"}
    store.close()
