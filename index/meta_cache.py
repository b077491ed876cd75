"""A compact in-memory cache of item metadata rows, so search results need no SQLite trip.

Metadata rows are immutable once committed (an id is only ever inserted or deleted), so the
cache needs no generation check: rows are filled lazily on first use (one SQLite query for
all misses of a search), and a delete drops its ids. Each entry is a small tuple
``(modality, source, concept, content_hash, extra JSON text)`` with interned modality and
concept strings; the ``extra`` JSON is parsed only when a hit is built, and the common empty
object is not parsed at all. On first use a store that fits (``max_entries``) is loaded in one
scan, so steady-state searches never touch SQLite; a larger one fills lazily and is cleared
when full, which keeps memory flat on stores of any size (~150-300 bytes per entry).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["MetaCache", "row_to_metadata"]

Row = tuple  # (modality, source, concept, content_hash, extra_json)


def row_to_metadata(row: Row) -> dict[str, Any]:
    """The public metadata dict of a cached row (a fresh dict each call)."""
    extra = row[4]
    return {
        "modality": row[0],
        "source": row[1],
        "concept": row[2],
        "content_hash": row[3],
        "extra": {} if extra == "{}" else json.loads(extra),
    }


def _compact(r: Row) -> Row:
    return (sys.intern(r[0]), r[1], None if r[2] is None else sys.intern(r[2]), r[3], r[4])


class MetaCache:
    """id -> compact metadata row, filled on demand through ``fetch(ids) -> {id: row}``."""

    def __init__(
        self, fetch: Callable[[Sequence[int] | None], dict[int, Row]], max_entries: int = 500_000
    ) -> None:
        self._fetch = fetch
        self._rows: dict[int, Row] = {}
        self._warm = False
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def is_warm(self) -> bool:
        return self._warm

    def warm(self, count: int) -> None:
        """Load every row at once (first call only) when ``count`` items fit in the cache."""
        if self._warm:
            return
        self._warm = True
        if 0 < count <= self.max_entries:
            got = self._fetch(None)
            with self._lock:
                for i, r in got.items():
                    self._rows[i] = _compact(r)

    def rows(self, ids: Iterable[int]) -> dict[int, Row]:
        """Rows of the ids that exist (missing ids are absent from the result)."""
        rows = self._rows
        out: dict[int, Row] = {}
        misses = []
        for i in ids:
            r = rows.get(i)
            if r is None:
                misses.append(i)
            else:
                out[i] = r
        if misses:
            got = self._fetch(misses)
            with self._lock:
                if len(rows) + len(got) > self.max_entries:
                    rows.clear()
                for i, r in got.items():
                    rows[i] = out[i] = _compact(r)
        return out

    def forget(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                self._rows.pop(int(i), None)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._warm = False
