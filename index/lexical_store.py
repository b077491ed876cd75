"""The lexical channel of the SQLite-backed stores: BM25 full-text search over the text the
collection holds (see :mod:`.lexical` for what is indexed and how queries are read).

Mixed into :class:`.backed_store.MetadataBackedStore`, so the FAISS and the Milvus stores share
it: both keep their metadata, and so the full-text index, in ``metadata.sqlite``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from . import lexical
from .base import RepairReport
from .errors import StoreError, StoreFullError
from .filters import Filter

__all__ = ["LexicalChannel"]

#: a filter no item can match (``modalities`` disjoint from the filter's)
_NOTHING = Filter(where={"modality": "\x00none"})

log = logging.getLogger(__name__)


class LexicalChannel:
    """Full-text index upkeep and :meth:`lexical_search` for a store with ``self.meta``
    (a :class:`.metadata.MetadataDB`), ``self.text_fields``, ``self._lock`` and
    ``self._full_disk`` (see :class:`.backed_store.MetadataBackedStore`)."""

    meta: Any
    manifest: Any
    text_fields: tuple[str, ...]
    read_only: bool
    _lock: Any

    # -- full-text index -------------------------------------------------------------------
    def _sync_lexical(self, report: RepairReport) -> None:
        """On open: build the full-text index when the database predates it or holds other
        fields (a read-only store builds it in memory on its first lexical search). A full
        disk leaves it for the next write or open to build."""
        if self.read_only:
            return
        try:
            with self._full_disk("building the full-text index"):
                built = self.meta.ensure_lexical(self.text_fields)
        except StoreFullError as exc:
            log.warning("%s", exc)
            report.notes.append("full-text index not built: no space left on device")
            return
        if built:
            report.notes.append(
                f"built the full-text index ({self.meta.lexical_count()} documents, "
                f"text fields {list(self.text_fields)})"
            )

    def _ensure_lexical(self) -> None:
        """Before a write (under the lock): the full-text index is open for writing."""
        if self.meta.fts_schema != "main" or self.meta.text_fields != self.text_fields:
            self.meta.ensure_lexical(self.text_fields)

    def set_text_fields(self, fields: Iterable[str] | str | None) -> bool:
        """Index the text of these ``extra`` fields (replacing the current choice): recorded in
        ``store.json`` and the full-text index rebuilt in one transaction; returns whether it
        changed. A crash in between is finished on the next open."""
        self._check_writable()
        try:
            new = lexical.check_text_fields(fields)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        with self._lock, self._full_disk("re-indexing the text fields"):
            if new != self.text_fields:
                self.manifest.backend_config = dict(
                    self.manifest.backend_config, text_fields=list(new)
                )
                self.manifest.write(self.path)
                if hasattr(self, "config") and hasattr(self.config, "text_fields"):
                    self.config.text_fields = list(new)
                self.text_fields = new
            return self.meta.ensure_lexical(new)

    def lexical_search(
        self,
        query: str,
        k: int = 10,
        modalities: str | Sequence[str] | None = None,
        filters: Filter | None = None,
    ) -> list[tuple[int, float]]:
        """Up to ``k`` ``(id, score)`` pairs, best first, of the items whose indexed text
        matches words of ``query`` (see :mod:`.lexical`), among ``modalities`` and those
        matching ``filters``. ``score`` is FTS5's BM25 negated: higher is better, always
        > 0, unbounded and not comparable across queries or with vector scores (fuse by
        rank). A query without searchable words returns ``[]``."""
        self._check_open()
        if not isinstance(query, str):
            raise StoreError(f"query must be a string, got {type(query).__name__}")
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise StoreError(f"k must be a positive int, got {k!r}")
        if filters is not None and not isinstance(filters, Filter):
            raise StoreError("filters must be a spaner.index.Filter")
        flt = _with_modalities(filters, modalities)
        match = lexical.match_expression(query)
        if match is None or flt is _NOTHING:
            return []
        with self._lock:
            if self.meta.fts_schema is None or self.meta.text_fields != self.text_fields:
                with self._full_disk("building the full-text index"):
                    self.meta.ensure_lexical(self.text_fields, write=not self.read_only)
            return self.meta.lexical_search(match, k, flt)


def _with_modalities(flt: Filter | None, modalities: str | Sequence[str] | None) -> Filter | None:
    """``flt`` further restricted to ``modalities``; :data:`_NOTHING` when nothing can."""
    if modalities is None:
        return flt
    try:
        only = Filter(modality=modalities).modality
    except ValueError as exc:
        raise StoreError(str(exc)) from exc
    if flt is None:
        return Filter(modality=only)
    if flt.modality is not None:
        only = tuple(m for m in flt.modality if m in only)
        if not only:
            return _NOTHING
    return Filter(modality=only, concept=flt.concept, where=flt.where)
