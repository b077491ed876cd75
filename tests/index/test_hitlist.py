"""Search results are HitLists: sequences of Hit made when first read."""

from __future__ import annotations

import numpy as np
from spaner.index import EmbeddingSpace, FaissConfig, Hit, HitList, Item, create_store
from store_helpers import unit


def test_hitlists_read_like_lists_and_match_search_ids(tmp_path) -> None:
    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    x = unit(40, 16, seed=1)
    ids = store.add(x, [Item("image", concept=f"c{i % 4}") for i in range(40)])
    res = store.search(x[:3], 5)
    d, i = store.search_ids(x[:3], 5)
    assert len(res) == 3 and all(isinstance(r, HitList) for r in res)
    for r, drow, irow in zip(res, d, i, strict=True):
        assert len(r) == 5 and [h.id for h in r] == irow.tolist()
        np.testing.assert_allclose([h.score for h in r], drow, rtol=1e-6)
        assert r[0] is r[0] and isinstance(r[-1], Hit)  # made once, then kept
        assert [h.id for h in r[1:3]] == irow[1:3].tolist()
        assert r[0].metadata["concept"] == f"c{list(ids).index(r[0].id) % 4}"
    assert res[0] == list(res[0]) and res[0] != res[1]
    assert "Hit(id=" in repr(res[0])
    store.close()


def test_a_hit_deleted_before_its_list_is_read_is_left_out(tmp_path) -> None:
    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    x = unit(30, 16, seed=2)
    ids = store.add(x, [Item("text") for _ in range(30)])
    res = store.search(x[:1], 3)[0]  # not read yet
    store.delete([int(ids[0])])
    assert ids[0] not in [h.id for h in res] and len(res) == 2
    store.close()


def test_empty_and_prebuilt_hitlists() -> None:
    assert HitList.of([]) == [] and len(HitList.of([])) == 0
    h = Hit(3, 0.5, {"modality": "text"})
    assert list(HitList.of([h])) == [h]


def test_reading_uncached_results_after_close_is_a_clear_store_error(tmp_path) -> None:
    from spaner.index.errors import StoreError

    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    x = unit(20, 16, seed=3)
    store.add(x, [Item("text") for _ in range(20)])
    res = store.search(x[:1], 3)[0]
    store.meta_cache.clear()  # as on a store larger than the cache: rows come from SQLite
    store.close()
    try:
        list(res)
    except StoreError as exc:
        assert "closed" in str(exc)
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("reading after close should raise StoreError")


def test_an_empty_query_batch_returns_empty_results_every_time(tmp_path) -> None:
    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    store.add(unit(3000, 16, seed=4), [Item("text") for _ in range(3000)])
    for _ in range(12):  # past the engine choice's untimed and timed sampling calls
        d, i = store.search_ids(np.empty((0, 16), np.float32), 5)
        assert d.shape == i.shape == (0, 5)
    assert store.search(np.empty((0, 16), np.float32), 5) == []
    store.close()


def test_search_results_make_each_list_once_and_only_when_read() -> None:
    from spaner.index import SearchResults

    made: list[list[int]] = []

    def rows(ids, scores):
        made.append(list(ids))
        return [
            Hit(int(i), float(s), {"modality": "text"}) for i, s in zip(ids, scores, strict=True)
        ]

    d = np.array([[0.9, 0.5], [0.8, 0.1], [0.7, 0.6]], np.float32)
    i = np.array([[1, 2], [3, 4], [5, 6]])
    res = SearchResults(d, i, rows)
    assert len(res) == 3 and made == []  # nothing is made before it is read
    assert res[1] is res[1] and res[-2] is res[1]  # one list per query, kept
    assert [h.id for h in res[1]] == [3, 4] and made == [[3, 4]]
    assert [h.id for h in res[2]] == [5, 6]
    assert [[h.id for h in r] for r in res[0:3:2]] == [[1, 2], [5, 6]]
    assert [[h.id for h in r] for r in res] == [[1, 2], [3, 4], [5, 6]]
    assert len(made) == 3  # each row's hits made exactly once
    assert res == [list(r) for r in res] and res != [[]] and res == SearchResults(d, i, rows)
    assert "Hit(id=1" in repr(res)
    try:
        res[3]
    except IndexError:
        pass
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("reading past the last query should raise IndexError")


def test_ann_results_with_fewer_than_k_hits_are_padded(tmp_path) -> None:
    # IVF probing one list of 4: fewer than k vectors are reachable, the rest pad with -1
    cfg = FaissConfig(factory="IVF4,Flat", nprobe=1)
    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=cfg)
    x = unit(400, 16, seed=5)
    store.add(x, [Item("text") for _ in range(400)])
    d, i = store.search_ids(x[:2], 300)
    assert d.shape == i.shape == (2, 300)
    for drow, irow in zip(d, i, strict=True):
        found = irow >= 0
        assert 0 < found.sum() < 300 and found[: found.sum()].all()  # hits first, then pads
        assert np.isfinite(drow[found]).all() and (drow[~found] <= np.finfo(np.float32).min).all()
    res = store.search(x[:2], 300)
    assert [len(r) for r in res] == (i >= 0).sum(axis=1).tolist()
    d, i = store.search_ids(x[:2], 3)  # k hits found: returned as FAISS gave them
    assert (i >= 0).all() and np.isfinite(d).all()
    store.close()


def test_search_results_pickle_and_copy_as_their_hits(tmp_path) -> None:
    import copy
    import pickle

    store = create_store(tmp_path / "s", EmbeddingSpace("h", 16), config=FaissConfig())
    x = unit(30, 16, seed=6)
    store.add(x, [Item("text", concept=f"c{i}") for i in range(30)])
    res = store.search(x[:3], 4)  # not read yet: holds the store's reader
    back = pickle.loads(pickle.dumps(res))
    store.close()  # the copies no longer need the store
    assert isinstance(back, list) and len(back) == 3
    assert [[h.id for h in r] for r in back] == [[h.id for h in r] for r in res]
    assert back[0][0].metadata["concept"] == f"c{back[0][0].id}"
    assert copy.deepcopy(res) == res
