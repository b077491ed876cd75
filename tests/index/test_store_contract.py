"""Behaviour every backend must show: add/search/get/delete/filter/content/persistence."""

from __future__ import annotations

import numpy as np
import pytest
from spaner.index import (
    DuplicateIdError,
    EmbeddingSpace,
    Filter,
    Item,
    SpaceMismatchError,
    StoreError,
    UnknownIdError,
    VectorError,
    content_sha256,
    open_store,
)
from store_helpers import DIM, items, unit


def brute(x: np.ndarray, q: np.ndarray, k: int, ids: np.ndarray) -> list[list[int]]:
    s = q @ x.T
    return [ids[np.argsort(-row, kind="stable")[:k]].tolist() for row in s]


def test_add_assigns_ids_and_search_is_exact(make_store, backend):
    s = make_store(backend)
    x = unit(300)
    ids = s.add(x, items(300))
    assert ids.tolist() == list(range(300))
    q = unit(5, seed=9)
    hits = s.search(q, k=7)
    assert [[h.id for h in row] for row in hits] == brute(x, q, 7, ids)
    assert all(row[0].score >= row[-1].score for row in hits)
    assert hits[0][0].metadata["modality"] in ("text", "image", "audio")
    more = s.add(unit(10, seed=1), items(10, start=300))
    assert more.tolist() == list(range(300, 310))
    assert s.count() == 310 and s.stats()["index_count"] == 310


def test_filters_restrict_results(make_store, backend):
    s = make_store(backend)
    x = unit(300)
    s.add(x, items(300))
    q = unit(3, seed=4)
    meta = s.get(range(300))
    for flt, pred in [
        (Filter(modality="image"), lambda m: m["modality"] == "image"),
        (
            Filter(modality=["text", "audio"], concept="c1"),
            lambda m: m["modality"] != "image" and m["concept"] == "c1",
        ),
        (
            Filter(where={"split": 1, "tag": "t2"}),
            lambda m: m["extra"]["split"] == 1 and m["extra"]["tag"] == "t2",
        ),
        (Filter(where={"source": "src/7"}), lambda m: m["source"] == "src/7"),
    ]:
        allowed = np.array([m["id"] for m in meta if pred(m)])
        hits = s.search(q, k=5, filters=flt)
        expect = brute(x[allowed], q, 5, allowed)
        assert [[h.id for h in row] for row in hits] == expect, flt
    assert s.search(q, k=5, filters=Filter(concept="nope")) == [[], [], []]


def test_get_delete_content_and_hash_lookup(make_store, backend):
    s = make_store(backend)
    x = unit(30)
    s.add(x, items(30))
    assert s.get([3])[0]["concept"] == "c3"
    assert s.content(0) == "text 0" and s.content(1) == b"bytes-1"
    assert s.find_by_hash(content_sha256(b"bytes-1")) == [1]
    np.testing.assert_allclose(s.vectors([2, 1]), x[[2, 1]], rtol=1e-6)
    assert s.delete([1, 2, 999]) == 2
    assert s.count() == 28 and s.stats()["index_count"] == 28
    with pytest.raises(UnknownIdError):
        s.get([1])
    with pytest.raises(UnknownIdError):
        s.content(1)
    assert s.find_by_hash(content_sha256(b"bytes-1")) == []
    assert not s.contents.exists(content_sha256(b"bytes-1"))
    found = {h.id for h in s.search(x[[1, 2]], k=28)[0]}
    assert 1 not in found and 2 not in found and len(found) == 28


def test_persistence_round_trip(make_store, backend, space):
    s = make_store(backend)
    x = unit(200)
    s.add(x, items(200))
    s.delete([5, 6])
    q = unit(4, seed=3)
    before = s.search(q, k=10, filters=Filter(modality="audio"))
    path = s.path
    s.close()
    with open_store(path, space) as r:
        assert r.last_repair.clean, r.last_repair
        assert r.count() == 198
        after = r.search(q, k=10, filters=Filter(modality="audio"))
        assert [[h.id for h in row] for row in after] == [[h.id for h in row] for row in before]
        assert r.content(0) == "text 0"
        assert r.add(unit(1, seed=5), items(1, start=200)).tolist() == [200]  # ids never reused


def test_space_mismatch_refused(make_store, backend, space):
    s = make_store(backend)
    s.add(unit(3), items(3))
    other = EmbeddingSpace("ckpt-bbbb", DIM)
    with pytest.raises(SpaceMismatchError):
        s.search(unit(1), k=1, space=other)
    assert s.search(unit(1), k=1, space=space)
    path = s.path
    s.close()
    with pytest.raises(SpaceMismatchError):
        open_store(path, other)
    with pytest.raises(SpaceMismatchError):
        open_store(path, EmbeddingSpace("ckpt-aaaa", DIM * 2))
    with pytest.raises(StoreError):
        open_store(path, space, backend="nope" if backend == "faiss" else "faiss")


@pytest.mark.parametrize(
    "bad, err",
    [
        (lambda x: x[:, :-1], VectorError),  # wrong dimension
        (lambda x: np.where(np.arange(len(x))[:, None] == 1, np.nan, x), VectorError),
        (lambda x: x * 3.0, VectorError),  # not unit
        (lambda x: np.zeros_like(x), VectorError),
    ],
)
def test_bad_vectors_refused_and_store_intact(make_store, backend, bad, err):
    s = make_store(backend)
    x = unit(20)
    s.add(x, items(20))
    gen = s.meta.generation
    with pytest.raises(err):
        s.add(bad(unit(3, seed=7)), items(3, start=20))
    assert s.count() == 20 and s.stats()["index_count"] == 20 and s.meta.generation == gen
    assert [h.id for h in s.search(x[:1], k=1)[0]] == [0]


def test_duplicate_ids_and_bad_metadata_refused(make_store, backend):
    s = make_store(backend)
    s.add(unit(5), items(5), ids=[10, 11, 12, 13, 14])
    with pytest.raises(DuplicateIdError):
        s.add(unit(2, seed=1), items(2), ids=[20, 20])
    with pytest.raises(DuplicateIdError):
        s.add(unit(2, seed=1), items(2), ids=[14, 15])  # 14 exists: whole batch refused
    with pytest.raises(StoreError):
        s.add(unit(2, seed=1), [{"modality": "text"}])  # count mismatch
    with pytest.raises(StoreError):
        s.add(unit(1, seed=1), [{"concept": "x"}])  # modality missing
    with pytest.raises(StoreError):
        s.search(unit(1), k=0)
    assert s.count() == 5 and s.stats()["index_count"] == 5
    assert s.find_by_hash("0" * 64) == []
    assert s.add(unit(1, seed=2), [Item("text")]).tolist() == [15]  # next id after the max


def test_near_unit_vectors_renormalised(make_store):
    s = make_store("faiss")
    x = unit(4) * (1 + 5e-4)
    s.add(x, items(4))
    np.testing.assert_allclose(np.linalg.norm(s.vectors(range(4)), axis=1), 1.0, atol=1e-6)
