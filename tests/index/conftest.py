"""Fixtures for the vector-store tests: a small space, backends, a store factory."""

from __future__ import annotations

import pytest
from spaner.index import EmbeddingSpace, FaissConfig, create_store
from store_helpers import DIM, HAS_MILVUS, MILVUS_SKIP


@pytest.fixture
def space() -> EmbeddingSpace:
    return EmbeddingSpace(checkpoint_hash="ckpt-aaaa", dim=DIM)


@pytest.fixture(
    params=[
        "faiss",
        pytest.param("milvus", marks=pytest.mark.skipif(not HAS_MILVUS, reason=MILVUS_SKIP)),
    ]
)
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_store(tmp_path, space):
    made = []

    def _make(backend: str = "faiss", config=None, name: str = "store"):
        if backend == "faiss" and config is None:
            config = FaissConfig()
        s = create_store(tmp_path / name, space, backend=backend, config=config)
        made.append(s)
        return s

    yield _make
    for s in made:
        if not s._closed:
            s.close()
