"""The :class:`VectorStore` interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .filters import Filter
from .records import HitList, Item
from .space import EmbeddingSpace

__all__ = ["VectorStore", "RepairReport"]


@dataclass
class RepairReport:
    """What :meth:`VectorStore.open` had to fix to make index and metadata agree."""

    added_to_index: int = 0
    removed_from_index: int = 0
    rebuilt: bool = False
    temp_files_removed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.added_to_index
            or self.removed_from_index
            or self.rebuilt
            or self.temp_files_removed
        )


class VectorStore(ABC):
    """Unit vectors of one embedding space with their metadata and original content.

    Ids are stable int64 (assigned by the store when not given) and never reused by it.
    Every mutation is atomic: a call that raises leaves the store as it was.
    """

    backend: str = "abstract"
    path: Path
    space: EmbeddingSpace
    last_repair: RepairReport
    #: the writer lock :func:`~spaner.index.open_store` took for this store (released on close)
    _writer_lock: Any = None
    #: opened with ``open_store(..., read_only=True)``: no lock, no writes
    read_only: bool = False

    @classmethod
    @abstractmethod
    def create(cls, path: str | Path, space: EmbeddingSpace, config: Any = None) -> VectorStore:
        """Create an empty store at ``path`` (a new or empty directory)."""

    @classmethod
    @abstractmethod
    def open(cls, path: str | Path, space: EmbeddingSpace | None) -> VectorStore:
        """Open an existing store, refusing another ``space``; repairs after a crash."""

    @abstractmethod
    def add(
        self,
        vectors: np.ndarray,
        metadata: Sequence[Item | dict[str, Any]],
        ids: Iterable[int] | None = None,
    ) -> np.ndarray:
        """Add a batch atomically; returns the ids (store-assigned when ``ids`` is None)."""

    @abstractmethod
    def search(
        self,
        vectors: np.ndarray,
        k: int = 10,
        filters: Filter | None = None,
        *,
        space: EmbeddingSpace | None = None,
    ) -> Sequence[HitList]:
        """Top-``k`` hits per query vector, best first, among items matching ``filters``
        (one read-only :class:`HitList` per query, a sequence of :class:`Hit`; the stores
        here return a :class:`SearchResults`, which makes each list when first read)."""

    def lexical_search(
        self,
        query: str,
        k: int = 10,
        modalities: str | Sequence[str] | None = None,
        filters: Filter | None = None,
    ) -> list[tuple[int, float]]:
        """Full-text search of the text the store holds: up to ``k`` ``(id, score)`` pairs,
        best first, ``score`` the BM25 relevance (higher is better, > 0; comparable only
        within one query). ``[]`` when the query has no searchable word. Backends without a
        full-text index raise :class:`NotImplementedError`."""
        raise NotImplementedError(
            f"the {self.backend!r} store backend has no full-text (lexical) index"
        )

    @abstractmethod
    def get(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Metadata of each id, in order; :class:`UnknownIdError` when one is missing."""

    @abstractmethod
    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        """Stored vectors of ``ids``, in order; :class:`UnknownIdError` when one is missing."""

    @abstractmethod
    def delete(self, ids: Iterable[int]) -> int:
        """Delete (durably) the ids that exist; returns how many were deleted."""

    @abstractmethod
    def count(self) -> int:
        """Number of items."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counts (total, per modality, per concept, index vs metadata), sizes, config."""

    @abstractmethod
    def content(self, item_id: int) -> bytes | str:
        """The original content kept for ``item_id`` (text or bytes)."""

    @abstractmethod
    def find_by_hash(self, content_hash: str) -> list[int]:
        """Ids of items whose content has this sha256 (lets ingest skip duplicates)."""

    @abstractmethod
    def train(self, vectors: np.ndarray) -> None:
        """Train the ANN index explicitly (no-op for exact indexes)."""

    @abstractmethod
    def save(self) -> None:
        """Checkpoint index caches to disk (metadata is always durable)."""

    @abstractmethod
    def close(self) -> None:
        """Save and release resources; the object is unusable afterwards."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
