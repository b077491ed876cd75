"""Vector stores: FAISS (embedded default) and Milvus (scale-out), with SQLite metadata.

Quick use::

    from spaner.index import EmbeddingSpace, Filter, Item, create_store, open_store

    space = EmbeddingSpace(checkpoint_hash="ab12…", dim=512)
    with create_store("data/store", space) as store:          # FAISS, exact search
        ids = store.add(vectors, [Item("text", content="a dog barking", concept="dog")])
        hits = store.search(query_vectors, k=10, filters=Filter(modality="image"))

    store = open_store("data/store", space)                     # refuses another space

On-disk format (version 1) — see ``index/FORMAT.md`` for the full description::

    <store>/store.json           format_version, backend, dim, metric, space, backend_config
    <store>/metadata.sqlite      (WAL) items: id, gen, modality, source, content_hash,
                                 concept, extra JSON, text content, vector float32 BLOB;
                                 meta: generation, next_id; tombstones
    <store>/content/ab/abcdef…   original non-text content, named by sha256
    <store>/index/faiss-g<generation>.index   FAISS IndexIDMap2 checkpoint (a cache)
    <store>/milvus.db            Milvus Lite collection (milvus backend, local URI)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import RepairReport, VectorStore
from .errors import (
    DuplicateIdError,
    IndexNotTrainedError,
    SpaceMismatchError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    UnknownIdError,
    VectorError,
)
from .faiss_store import FaissConfig, FaissStore
from .filters import Filter
from .records import Hit, HitList, Item, SearchResults, content_sha256
from .registry import available_backends, create_store, open_store, register_backend
from .space import FORMAT_VERSION, EmbeddingSpace
from .store_lock import StoreLockedError

if TYPE_CHECKING:
    from .milvus_store import MilvusConfig, MilvusStore

__all__ = [
    "VectorStore",
    "FaissStore",
    "FaissConfig",
    "MilvusStore",
    "MilvusConfig",
    "Filter",
    "Hit",
    "HitList",
    "SearchResults",
    "Item",
    "EmbeddingSpace",
    "RepairReport",
    "create_store",
    "open_store",
    "register_backend",
    "available_backends",
    "content_sha256",
    "FORMAT_VERSION",
    "StoreError",
    "SpaceMismatchError",
    "VectorError",
    "DuplicateIdError",
    "UnknownIdError",
    "IndexNotTrainedError",
    "StoreFormatError",
    "StoreLockedError",
    "StoreFullError",
]


def __getattr__(name: str) -> Any:
    """Import the Milvus backend only when asked for (pymilvus is optional)."""
    if name in ("MilvusStore", "MilvusConfig"):
        from . import milvus_store

        return getattr(milvus_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
