"""FAISS-specific behaviour: exact engine parity, ANN training, HNSW deletes, repair on open."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from spaner.index import FaissConfig, Filter, IndexNotTrainedError, StoreError, open_store
from spaner.index.atomic_io import TMP_PREFIX
from spaner.index.exact import choose_exact_engine, topk_inner_product
from store_helpers import DIM, items, unit


def test_exact_search_matches_faiss_flat(make_store):
    s = make_store()
    x = unit(2000, seed=1)
    ids = s.add(x, items(2000, content=False))
    ref = faiss.IndexFlatIP(DIM)
    ref.add(x)
    for b in (1, 16, 64):
        q = unit(b, seed=b)
        d, i = s.search_ids(q, k=10)
        rd, ri = ref.search(q, 10)
        np.testing.assert_array_equal(i, ids[ri])
        np.testing.assert_allclose(d, rd, rtol=1e-5, atol=1e-5)


def test_topk_mask_and_subset_agree():
    x = unit(500, seed=2)
    q = unit(3, seed=3)
    mask = np.arange(500) % 3 == 0
    d1, r1 = topk_inner_product(x, q, 5, mask=mask)
    d2, r2 = topk_inner_product(x, q, 5, subset=np.flatnonzero(mask))
    np.testing.assert_array_equal(r1, r2)
    assert (r1 % 3 == 0).all()
    assert (
        choose_exact_engine(1) == "torch"
        and choose_exact_engine(64, table={"cpu:64": "faiss"}) == "faiss"
    )


def test_ivfpq_trains_once_enough_vectors_then_searches(make_store, space):
    s = make_store(config=FaissConfig(factory="IVF4,PQ4x4", nprobe=4))
    need = s.info.min_train
    assert need == 30 * 16
    s.add(unit(100), items(100))
    with pytest.raises(IndexNotTrainedError, match="train"):
        s.search(unit(1), k=3)
    assert s.count() == 100 and s.stats()["index_count"] == 0
    s.add(
        unit(need, seed=5), items(need, start=100, content=False)
    )  # crosses the threshold: trains + indexes all
    assert s.stats()["index_count"] == need + 100
    hits = s.search(unit(2, seed=7), k=5)
    assert all(len(r) == 5 for r in hits)
    filtered = s.search(unit(2, seed=7), k=5, filters=Filter(modality="audio"))
    assert all(h.metadata["modality"] == "audio" for r in filtered for h in r)
    path = s.path
    s.close()
    with open_store(path, space) as r:
        assert r.last_repair.clean and r.index.is_trained and r.count() == need + 100


def test_explicit_train_and_refusals(make_store):
    s = make_store(config=FaissConfig(factory="IVF4,Flat"))
    s.add(unit(10), items(10))
    with pytest.raises(StoreError, match="at least"):
        s.train(unit(2))
    s.train(unit(400, seed=3))
    assert s.stats()["index_count"] == 10  # stored vectors indexed after training
    with pytest.raises(StoreError, match="already trained"):
        s.train(unit(400, seed=3))
    with pytest.raises(ValueError):
        make_store(config=FaissConfig(factory="NotAFactory"), name="bad")


def test_ann_rerank_scores_are_exact_and_raise_recall(make_store):
    x = unit(3000, seed=11)
    q = unit(20, seed=12)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :5]
    recall = {}
    for rf in (1, 50):
        s = make_store(
            config=FaissConfig(factory="IVF8,PQ4x4", nprobe=8, rerank_factor=rf), name=f"rf{rf}"
        )
        s.add(x, items(3000, content=False))
        d, got = s.search_ids(q, k=5)
        recall[rf] = np.mean(
            [len(set(g) & set(e)) / 5 for g, e in zip(got.tolist(), exact.tolist(), strict=False)]
        )
        if rf > 1:  # reranked scores are the true inner products, best first
            np.testing.assert_allclose(d, np.take_along_axis(q @ x.T, got, 1), rtol=1e-5)
            assert (np.diff(d, axis=1) <= 0).all()
    assert recall[50] > recall[1] and recall[50] >= 0.8, recall


def test_hnsw_delete_is_masked_and_durable(make_store, space):
    s = make_store(config=FaissConfig(factory="HNSW8"))
    x = unit(200, seed=4)
    s.add(x, items(200))
    assert s.delete([0, 1]) == 2
    assert s.count() == 198 and s.stats()["index_count"] == 198
    got = {h.id for h in s.search(x[:2], k=5)[0]} | {h.id for h in s.search(x[:2], k=5)[1]}
    assert not got & {0, 1}
    path = s.path
    s.close()
    with open_store(path, space) as r:
        assert r.stats()["index_count"] == 198
        assert not {h.id for h in r.search(x[:1], k=5)[0]} & {0, 1}


def test_open_patches_stale_or_missing_cache(make_store, space):
    s = make_store()
    x = unit(100)
    s.add(x, items(100))
    s.save()
    s.add(unit(20, seed=1), items(20, start=100))  # not checkpointed
    s.delete([3])
    path = s.path
    s.meta.close()  # simulate a crash: no close()/save()
    s._closed = True
    (path / "index" / f"{TMP_PREFIX}torn").write_bytes(b"junk")
    with open_store(path, space) as r:
        rep = r.last_repair
        assert (
            rep.added_to_index == 20 and rep.removed_from_index == 1 and rep.temp_files_removed == 1
        )
        assert r.count() == r.stats()["index_count"] == 119
        assert [h.id for h in r.search(unit(20, seed=1)[:1], k=1)[0]] == [100]
    for f in (path / "index").glob("*.index"):
        f.write_bytes(b"corrupt")
    with open_store(path, space) as r:
        assert r.last_repair.rebuilt and r.stats()["index_count"] == 119
