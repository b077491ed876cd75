"""A compact in-memory cache of item metadata rows, so search results need no SQLite trip.

Metadata rows are immutable once committed (an id is only ever inserted or deleted), so the
cache needs no generation check: rows are filled lazily on first use (one SQLite query for
all misses of a search), and a delete drops its ids. Each entry is a small tuple
``(modality, source, concept, content_hash, extra JSON text)`` with interned modality and
concept strings; the ``extra`` JSON is parsed only when a hit is built, and the common empty
object is not parsed at all. The cache is bounded (``max_entries``): when full, it is cleared
and refills from the queries that follow, which keeps memory flat on stores of any size.
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


class MetaCache:
    """id -> compact metadata row, filled on demand through ``fetch(ids) -> {id: row}``."""

    def __init__(
        self, fetch: Callable[[Sequence[int]], dict[int, Row]], max_entries: int = 500_000
    ) -> None:
        self._fetch = fetch
        self._rows: dict[int, Row] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def __len__(self) -> int:
        return len(self._rows)

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
                    r = (
                        sys.intern(r[0]),
                        r[1],
                        None if r[2] is None else sys.intern(r[2]),
                        r[3],
                        r[4],
                    )
                    rows[i] = out[i] = r
        return out

    def forget(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                self._rows.pop(int(i), None)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
