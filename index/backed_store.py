"""Shared implementation of stores whose source of truth is the SQLite metadata DB.

A backend subclass only manages its vector index (FAISS in-process, or a Milvus
collection) through a few hooks; everything about ids, metadata, content, validation,
space checks and crash reconciliation lives here once.

Write order for ``add``: validate everything -> write content files (content-addressed,
idempotent) -> one SQLite transaction with metadata and vectors (the commit point) -> apply
to the index. A crash before the commit leaves at most orphan content files; a crash after it
leaves an index that is behind, which :meth:`_reconcile` patches on the next open from the
vectors stored in SQLite.

The full-text index (:mod:`.lexical`) lives in the same SQLite database and is written in the
same transaction as the metadata, so it needs no reconciliation; :meth:`lexical_search`
queries it with BM25.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from spaner.errors import is_disk_full

from . import lexical
from .base import RepairReport, VectorStore
from .content_store import ContentStore
from .errors import StoreError, StoreFullError, UnknownIdError
from .filters import Filter
from .lexical_store import LexicalChannel
from .meta_cache import MetaCache, row_to_metadata
from .metadata import MetadataDB
from .records import Hit, Item, SearchResults, coerce_items
from .space import MANIFEST_NAME, EmbeddingSpace, StoreManifest
from .vector_checks import check_ids, check_vectors

__all__ = ["MetadataBackedStore"]

log = logging.getLogger(__name__)


class MetadataBackedStore(LexicalChannel, VectorStore):
    """Base for backends: SQLite holds ids, metadata, content refs and the vectors."""

    def __init__(self, path: Path, manifest: StoreManifest) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.space = manifest.space
        self.dim = manifest.space.dim
        self.normalize = bool(manifest.backend_config.get("normalize", False))
        #: ``extra`` fields whose text the full-text index holds (``backend_config``)
        self.text_fields = lexical.text_fields_of(manifest.backend_config.get("text_fields"))
        self._lock = threading.RLock()
        self.meta = MetadataDB(self.path / "metadata.sqlite", self.dim)
        self.contents = ContentStore(self.path / "content")
        self.meta_cache = MetaCache(self.meta.meta_rows)
        self.last_repair = RepairReport()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def _create_dir(
        cls, path: str | Path, space: EmbeddingSpace, backend_config: dict[str, Any]
    ) -> Path:
        p = Path(path)
        if p.exists() and any(p.iterdir()):
            raise StoreError(f"{p}: directory exists and is not empty; open_store() it instead")
        p.mkdir(parents=True, exist_ok=True)
        StoreManifest(backend=cls.backend, space=space, backend_config=backend_config).write(p)
        return p

    @classmethod
    def _read_manifest(cls, path: str | Path, space: EmbeddingSpace | None) -> StoreManifest:
        p = Path(path)
        manifest = StoreManifest.read(p)
        if manifest.backend != cls.backend:
            raise StoreError(f"{p}: a {manifest.backend!r} store, not {cls.backend!r}")
        manifest.space.check(space)
        return manifest

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")

    @contextmanager
    def _full_disk(self, what: str) -> Iterator[None]:
        """Turn an out-of-space failure into :class:`StoreFullError` naming the store."""
        try:
            yield
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            raise StoreFullError(
                f"{self.path}: no space left on device while {what} ({exc}); nothing of this "
                "call was stored and the store is intact: free space and retry"
            ) from exc

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise StoreError(
                f"{self.path}: opened read-only; open it for writing (one writer at a time)"
            )

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                with self._full_disk("saving the index cache on close"):
                    self.save()
        finally:
            self._index_close()
            self.meta.close()
            self._closed = True
            lock, self._writer_lock = self._writer_lock, None
            if lock is not None:
                lock.release()

    # -- index hooks (backends implement) -------------------------------------------------
    @abstractmethod
    def _index_add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _index_remove(self, ids: np.ndarray) -> None: ...

    @abstractmethod
    def _index_search(
        self, queries: np.ndarray, k: int, flt: Filter | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) ``[b, k]``, ids -1 where fewer than k hits."""

    @abstractmethod
    def _index_count(self) -> int: ...

    @abstractmethod
    def _index_close(self) -> None: ...

    @abstractmethod
    def _reconcile(self) -> RepairReport:
        """Make the index agree with SQLite; called on open."""

    # -- writes -------------------------------------------------------------------------
    def add(
        self,
        vectors: np.ndarray,
        metadata: Sequence[Item | dict[str, Any]],
        ids: Iterable[int] | None = None,
    ) -> np.ndarray:
        return self._add(vectors, metadata, ids, to_index=True)

    def _add(
        self,
        vectors: np.ndarray,
        metadata: Sequence[Item | dict[str, Any]],
        ids: Iterable[int] | None,
        *,
        to_index: bool,
    ) -> np.ndarray:
        """:meth:`add`; ``to_index=False`` when the vectors are already in the index under
        ``ids`` (written there by another process), so only the metadata is committed."""
        self._check_writable()
        vecs = check_vectors(vectors, self.dim, normalize=self.normalize)
        try:
            items = coerce_items(metadata, len(vecs))
        except (TypeError, ValueError) as exc:
            raise StoreError(f"bad metadata: {exc}") from exc
        id_arr = check_ids(ids, len(vecs))
        if len(vecs) == 0:
            return np.empty(0, np.int64)
        with self._lock, self._full_disk("adding items"):
            self._ensure_lexical()
            self.contents.put_many(
                {
                    it.content_hash: bytes(it.content)
                    for it in items
                    if isinstance(it.content, (bytes, bytearray, memoryview))
                }
            )
            out_ids, gen = self.meta.insert(id_arr, vecs, items)  # the commit point
        with self._lock:
            if to_index:
                self._index_add(out_ids, vecs)
            self._after_commit(gen)
        log.debug("added %d vectors (generation %d)", len(out_ids), gen)
        return out_ids

    def _after_commit(self, gen: int) -> None:
        """Hook run (under the lock) after a committed mutation reached the index."""

    def delete(self, ids: Iterable[int]) -> int:
        self._check_writable()
        arr = np.asarray(list(ids), dtype=np.int64)
        with self._lock:
            with self._full_disk("deleting items"):
                self._ensure_lexical()
                gone, hashes, gen = self.meta.delete(arr.tolist())
            self.meta_cache.forget(gone)
            if gone:
                self._index_remove(np.asarray(gone, dtype=np.int64))
                for h in set(hashes):
                    if not self.meta.hash_in_use(h):
                        self.contents.remove(h)
                self._after_commit(gen)
        return len(gone)

    # -- reads --------------------------------------------------------------------------
    def search(
        self,
        vectors: np.ndarray,
        k: int = 10,
        filters: Filter | None = None,
        *,
        space: EmbeddingSpace | None = None,
    ) -> SearchResults:
        scores, ids = self.search_ids(vectors, k, filters, space=space)
        return self.hits(scores, ids)

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> SearchResults:
        """One :class:`HitList` per query from ``search_ids`` arrays (made when first read),
        each making its hits (metadata from the in-memory cache) when first read."""
        if not self.meta_cache.is_warm and (ids >= 0).any():
            self.meta_cache.warm(self.meta.count())
        return SearchResults(scores, ids, self._make_hits)

    def _make_hits(self, ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
        id_row = ids.tolist()
        try:
            rows = self.meta_cache.rows([i for i in id_row if i >= 0])
        except sqlite3.ProgrammingError as exc:  # an item not cached, and the store closed
            raise StoreError(
                f"{self.path}: search results read after the store was closed; read them first"
            ) from exc
        get, build, new = rows.get, row_to_metadata, object.__new__
        hits = []
        for s, i in zip(scores.tolist(), id_row, strict=True):
            r = get(i)
            if r is not None:  # inlined records.make_hit: this loop is per result
                h = new(Hit)
                h._id = i
                h._score = s
                h._meta = None
                h._row = r
                h._build = build
                hits.append(h)
        return hits

    def search_ids(
        self,
        vectors: np.ndarray,
        k: int = 10,
        filters: Filter | None = None,
        *,
        space: EmbeddingSpace | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns raw ``(scores, ids)`` arrays ``[b, k]`` (ids -1
        pad rows with fewer than ``k`` hits) without fetching metadata: the fast path."""
        self._check_open()
        self.space.check(space)
        if not isinstance(k, int) or k <= 0:
            raise StoreError(f"k must be a positive int, got {k!r}")
        if filters is not None and not isinstance(filters, Filter):
            raise StoreError("filters must be a spaner.index.Filter")
        q = check_vectors(vectors, self.dim, normalize=True)
        with self._lock:
            return self._index_search(q, k, filters)

    def get(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        self._check_open()
        wanted = [int(i) for i in ids]
        metas = self.meta.metadata(wanted)
        missing = [i for i in wanted if i not in metas]
        if missing:
            raise UnknownIdError(f"unknown ids: {missing[:10]}")
        return [dict(metas[i], id=i) for i in wanted]

    def vectors(self, ids: Iterable[int]) -> np.ndarray:
        self._check_open()
        wanted = np.asarray([int(i) for i in ids], dtype=np.int64)
        found, vecs = self.meta.vectors(wanted.tolist())
        pos = {int(i): r for r, i in enumerate(found)}
        missing = [int(i) for i in wanted if int(i) not in pos]
        if missing:
            raise UnknownIdError(f"unknown ids: {missing[:10]}")
        return vecs[[pos[int(i)] for i in wanted]] if len(wanted) else vecs

    def count(self) -> int:
        self._check_open()
        return self.meta.count()

    def content(self, item_id: int) -> bytes | str:
        self._check_open()
        ref = self.meta.content_ref(item_id)
        if ref is None:
            raise UnknownIdError(f"unknown id: {item_id}")
        kind, digest, text = ref
        if kind == "text":
            return text
        if kind == "file":
            try:
                return self.contents.get(digest)
            except FileNotFoundError as exc:
                raise StoreError(f"content file of id {item_id} is missing ({digest})") from exc
        raise StoreError(f"id {item_id} was added without content")

    def ids(self, filters: Filter | None = None) -> np.ndarray:
        """Sorted ids of the items matching ``filters`` (all items when None)."""
        self._check_open()
        return np.sort(self.meta.ids_matching(filters))

    def existing(self, ids: Iterable[int]) -> list[int]:
        """The given ids that are in the store, sorted."""
        self._check_open()
        return self.meta.existing([int(i) for i in ids])

    def find_by_hash(self, content_hash: str) -> list[int]:
        self._check_open()
        return self.meta.find_by_hash(content_hash)

    def stats(self) -> dict[str, Any]:
        self._check_open()
        return {
            "backend": self.backend,
            "path": str(self.path),
            "space": self.space.to_dict(),
            "count": self.meta.count(),
            "index_count": self._index_count(),
            "generation": self.meta.generation,
            "by_modality": self.meta.counts_by("modality"),
            "by_concept": self.meta.counts_by("concept"),
            "config": dict(self.manifest.backend_config),
            "lexical": {
                "text_fields": list(self.text_fields),
                "documents": self.meta.lexical_count() if self.meta.fts_schema else None,
            },
            "last_repair": vars(self.last_repair),
        }

    def vacuum_content(self) -> int:
        """Remove content files no item references (left by a crash before commit)."""
        self._check_writable()
        with self._lock:
            used = self.meta.file_hashes()
            orphans = [d for d in self.contents.digests() if d not in used]
            for d in orphans:
                self.contents.remove(d)
            return len(orphans) + self.contents.remove_temp_files()

    def _remove_temp_files(self) -> int:
        from .atomic_io import TMP_PREFIX

        if self.read_only:  # the temp files may be a live writer's
            return 0
        n = self.contents.remove_temp_files()
        for f in self.path.rglob(f"{TMP_PREFIX}*"):
            if f.name != MANIFEST_NAME:
                f.unlink(missing_ok=True)
                n += 1
        return n
