"""FAISS exact and Milvus (Lite, FLAT) return the same top-k ids on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from spaner.index import Filter
from store_helpers import HAS_MILVUS, MILVUS_SKIP, items, unit

pytestmark = pytest.mark.skipif(not HAS_MILVUS, reason=MILVUS_SKIP)


def test_faiss_exact_and_milvus_agree(make_store):
    x = unit(1500, seed=21)
    meta = items(1500, content=False)
    f = make_store("faiss", name="f")
    m = make_store("milvus", name="m")
    assert f.add(x, meta).tolist() == m.add(x, meta).tolist()
    q = unit(16, seed=22)
    for flt in (None, Filter(modality="text"), Filter(concept=["c1", "c2"], where={"split": 1})):
        fd, fi = f.search_ids(q, k=10, filters=flt)
        md, mi = m.search_ids(q, k=10, filters=flt)
        np.testing.assert_array_equal(fi, mi)
        np.testing.assert_allclose(fd, md, atol=1e-4)
    f.delete(range(0, 1500, 3))
    m.delete(range(0, 1500, 3))
    np.testing.assert_array_equal(f.search_ids(q, k=10)[1], m.search_ids(q, k=10)[1])
