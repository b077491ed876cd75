"""SQLite (WAL) metadata: the store's source of truth.

One row per item: stable int64 id, modality, source, sha256 content hash, concept, free JSON
``extra``, the text content (for text items) and the vector itself as a float32 BLOB. Each
committed mutation batch bumps ``generation``; rows carry the generation that wrote them and
deletions leave a tombstone with theirs, so an index cache checkpointed at generation g can be
patched with :meth:`MetadataDB.changes_since`. Ids come from a monotonic counter and are never
reused by the store.

The full-text index ``items_fts`` (FTS5, see :mod:`.lexical`) is written and deleted in the
same transactions as the ``items`` rows. Databases written before it (schema version 1) get
it built from their stored text by :meth:`MetadataDB.ensure_lexical` (schema version 2).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from . import lexical
from .filters import Filter, to_sql
from .records import Item

__all__ = ["MetadataDB", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the full-text index items_fts
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    gen INTEGER NOT NULL,
    modality TEXT NOT NULL,
    source TEXT,
    content_hash TEXT,
    concept TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    content_kind TEXT,
    text_content TEXT,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_modality ON items(modality);
CREATE INDEX IF NOT EXISTS items_concept ON items(concept);
CREATE INDEX IF NOT EXISTS items_hash ON items(content_hash);
CREATE INDEX IF NOT EXISTS items_gen ON items(gen);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY, gen INTEGER NOT NULL);
"""
_META_COLS = "id, modality, source, concept, content_hash, extra"
_FTS_INSERT = f"INSERT INTO {{schema}}.{lexical.FTS_TABLE}(rowid, body, fields) VALUES (?,?,?)"


def _row_meta(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "modality": row[1],
        "source": row[2],
        "concept": row[3],
        "content_hash": row[4],
        "extra": json.loads(row[5]),
    }


class MetadataDB:
    """Thread-safe wrapper over one SQLite file in WAL mode with ``synchronous=FULL``."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        #: where the full-text index lives ("main"; "temp" for an old read-only store; None
        #: until :meth:`ensure_lexical`) and the ``extra`` fields it holds
        self.fts_schema: str | None = None
        self.text_fields: tuple[str, ...] = ()
        with self.transaction() as cur:
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            cur.execute("INSERT OR IGNORE INTO meta VALUES ('next_id', '0')")
            cur.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # -- plumbing -----------------------------------------------------------------------
    @contextmanager
    def transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on any exception)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(f"BEGIN {mode}")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _meta_int(self, cur: sqlite3.Cursor, key: str) -> int:
        return int(cur.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- writes -------------------------------------------------------------------------
    def insert(
        self, ids: np.ndarray | None, vectors: np.ndarray, items: list[Item]
    ) -> tuple[np.ndarray, int]:
        """Insert a batch atomically; returns (ids, new generation). Raises on existing ids."""
        from .errors import DuplicateIdError

        with self.transaction() as cur:
            gen = self._meta_int(cur, "generation") + 1
            next_id = self._meta_int(cur, "next_id")
            if ids is None:
                ids = np.arange(next_id, next_id + len(items), dtype=np.int64)
            else:
                clash = self._existing(cur, ids)
                if clash:
                    raise DuplicateIdError(f"ids already in the store: {clash[:5]}")
            rows, docs = [], []
            for i, item, vec in zip(ids.tolist(), items, vectors, strict=False):
                is_text = isinstance(item.content, str)
                kind = None if item.content is None else ("text" if is_text else "file")
                rows.append(
                    (
                        i,
                        gen,
                        item.modality,
                        item.source,
                        item.content_hash,
                        item.concept,
                        json.dumps(dict(item.extra), sort_keys=True),
                        kind,
                        item.content if is_text else None,
                        vec.tobytes(),
                    )
                )
                doc = lexical.document(rows[-1][8], item.extra, self.text_fields)
                if doc is not None:
                    docs.append((i, *doc))
            cur.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            if docs:
                self._require_fts("main")
                cur.executemany(_FTS_INSERT.format(schema="main"), docs)
            cur.executemany("DELETE FROM tombstones WHERE id=?", [(i,) for i in ids.tolist()])
            top = int(ids.max()) + 1 if len(ids) else next_id
            cur.execute("UPDATE meta SET value=? WHERE key='next_id'", (str(max(next_id, top)),))
            cur.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
        return ids, gen

    def delete(self, ids: Sequence[int]) -> tuple[list[int], list[str], int]:
        """Delete ids atomically; returns (deleted ids, their file content hashes, generation)."""
        with self.transaction() as cur:
            present = self._existing(cur, np.asarray(ids, dtype=np.int64))
            gen = self._meta_int(cur, "generation")
            hashes: list[str] = []
            if present:
                gen += 1
                hashes = [
                    h
                    for (h,) in cur.execute(
                        "SELECT content_hash FROM items WHERE content_kind='file' AND id IN "
                        "(SELECT value FROM json_each(?))",
                        (json.dumps(present),),
                    )
                ]
                cur.executemany("DELETE FROM items WHERE id=?", [(i,) for i in present])
                self._require_fts("main")
                cur.executemany(
                    f"DELETE FROM main.{lexical.FTS_TABLE} WHERE rowid=?", [(i,) for i in present]
                )
                cur.executemany(
                    "INSERT OR REPLACE INTO tombstones VALUES (?, ?)", [(i, gen) for i in present]
                )
                cur.execute("UPDATE meta SET value=? WHERE key='generation'", (str(gen),))
        return present, hashes, gen

    def _require_fts(self, schema: str) -> None:
        if self.fts_schema != schema:
            raise RuntimeError(
                f"{self.path}: the full-text index is not open for writing (ensure_lexical first)"
            )

    # -- full-text index ----------------------------------------------------------------
    def _has_fts(self, schema: str) -> bool:
        q = f"SELECT 1 FROM {schema}.sqlite_master WHERE name=?"
        return self._conn.execute(q, (lexical.FTS_TABLE,)).fetchone() is not None

    def lexical_current(self, fields: Sequence[str]) -> bool:
        """Whether the database's full-text index exists and holds exactly ``fields``."""
        with self._lock:
            return self._has_fts("main") and self.get_meta("fts_fields") == lexical.fields_key(
                fields
            )

    def ensure_lexical(self, fields: Sequence[str], *, write: bool = True) -> bool:
        """Make the full-text index hold the text of every item and the ``extra`` ``fields``;
        returns True when it had to be (re)built: missing (a version-1 database) or built
        with other fields. Built in one transaction from the stored rows. ``write=False``
        (a read-only store) builds it in SQLite's temp schema (memory) instead."""
        fields = tuple(fields)
        with self._lock:
            if self.fts_schema is not None and self.text_fields == fields:
                return False
            if self.lexical_current(fields):
                self.fts_schema, self.text_fields = "main", fields
                return False
            schema = "main" if write else "temp"
            with self.transaction("IMMEDIATE" if write else "DEFERRED") as cur:
                cur.execute(f"DROP TABLE IF EXISTS {schema}.{lexical.FTS_TABLE}")
                cur.execute(lexical.fts_ddl(schema))
                n = self._fill_fts(cur, schema, fields)
                if write:
                    cur.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('fts_fields', ?)",
                        (lexical.fields_key(fields),),
                    )
                    cur.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            self.fts_schema, self.text_fields = schema, fields
            log.info("%s: full-text index built in %s (%d documents)", self.path, schema, n)
            return True

    def _fill_fts(self, cur: sqlite3.Cursor, schema: str, fields: Sequence[str]) -> int:
        read = self._conn.cursor()  # same connection and transaction as ``cur``
        read.execute("SELECT id, text_content, extra FROM items ORDER BY id")
        n = 0
        while batch := read.fetchmany(10_000):
            docs = []
            for i, text, extra in batch:
                doc = lexical.document(text, json.loads(extra), fields)
                if doc is not None:
                    docs.append((i, *doc))
            cur.executemany(_FTS_INSERT.format(schema=schema), docs)
            n += len(docs)
        return n

    def lexical_search(self, match: str, k: int, flt: Filter | None) -> list[tuple[int, float]]:
        """(id, score) of the best ``k`` items for the FTS5 expression ``match`` (built by
        :func:`.lexical.match_expression`), among those matching ``flt``; score = -bm25, so
        higher is better and every score is > 0."""
        t = f"{self.fts_schema}.{lexical.FTS_TABLE}"
        clause, params = to_sql(flt)
        if clause == "1":
            q = (
                f"SELECT rowid, bm25({lexical.FTS_TABLE}) FROM {t} "
                f"WHERE {lexical.FTS_TABLE} MATCH ? ORDER BY bm25({lexical.FTS_TABLE}) LIMIT ?"
            )
            args: list[Any] = [match, k]
        else:
            q = (
                f"SELECT {lexical.FTS_TABLE}.rowid, bm25({lexical.FTS_TABLE}) FROM {t} "
                f"JOIN items ON items.id = {lexical.FTS_TABLE}.rowid "
                f"WHERE {lexical.FTS_TABLE} MATCH ? AND ({clause}) "
                f"ORDER BY bm25({lexical.FTS_TABLE}) LIMIT ?"
            )
            args = [match, *params, k]
        with self._lock:
            rows = self._conn.execute(q, args).fetchall()
        return [(int(i), -float(s)) for i, s in rows]

    def lexical_rows(self) -> dict[int, tuple[str, str]]:
        """id -> (body, fields) of every row of the full-text index (checks and tests)."""
        t = f"{self.fts_schema or 'main'}.{lexical.FTS_TABLE}"
        with self._lock:
            return {
                int(i): (b, f)
                for i, b, f in self._conn.execute(f"SELECT rowid, body, fields FROM {t}")
            }

    def lexical_count(self) -> int:
        t = f"{self.fts_schema or 'main'}.{lexical.FTS_TABLE}"
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])

    def expected_lexical_rows(self) -> dict[int, tuple[str, str]]:
        """id -> (body, fields) the full-text index should hold, from the items rows."""
        out = {}
        with self._lock:
            for i, text, extra in self._conn.execute("SELECT id, text_content, extra FROM items"):
                doc = lexical.document(text, json.loads(extra), self.text_fields)
                if doc is not None:
                    out[int(i)] = doc
        return out

    def prune_tombstones(self, upto_gen: int) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM tombstones WHERE gen <= ?", (upto_gen,))

    # -- reads --------------------------------------------------------------------------
    def _existing(self, cur: sqlite3.Cursor, ids: np.ndarray) -> list[int]:
        q = "SELECT id FROM items WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
        return [r[0] for r in cur.execute(q, (json.dumps(ids.tolist()),))]

    def existing(self, ids: Sequence[int]) -> list[int]:
        with self._lock:
            return self._existing(self._conn.cursor(), np.asarray(ids, dtype=np.int64))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def meta_rows(self, ids: Sequence[int] | None) -> dict[int, tuple]:
        """id -> compact row ``(modality, source, concept, content_hash, extra JSON text)``
        for ``ids`` (every item when None)."""
        with self._lock:
            if ids is None:
                rows = self._conn.execute(f"SELECT {_META_COLS} FROM items").fetchall()
            else:
                q = f"SELECT {_META_COLS} FROM items WHERE id IN (SELECT value FROM json_each(?))"
                rows = self._conn.execute(q, (json.dumps([int(i) for i in ids]),)).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    def metadata(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """id -> metadata dict for the ids that exist."""
        q = f"SELECT {_META_COLS} FROM items WHERE id IN (SELECT value FROM json_each(?))"
        with self._lock:
            rows = self._conn.execute(q, (json.dumps([int(i) for i in ids]),)).fetchall()
        return {r[0]: _row_meta(r) for r in rows}

    def vectors(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for the given ids (all rows when None), ordered by id."""
        with self._lock:
            if ids is None:
                rows = self._conn.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT id, vector FROM items WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                    (json.dumps([int(i) for i in ids]),),
                ).fetchall()
        return self._unpack(rows)

    def _unpack(self, rows: list[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, self.dim)
        return out_ids, vecs.copy() if len(rows) else np.empty((0, self.dim), np.float32)

    def sample_vectors(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to ``n`` stored vectors, a seeded uniform sample (for ANN training)."""
        with self._lock:
            all_ids = [r[0] for r in self._conn.execute("SELECT id FROM items ORDER BY id")]
        if len(all_ids) > n:
            rng = np.random.default_rng(seed)
            all_ids = sorted(rng.choice(all_ids, size=n, replace=False).tolist())
        return self.vectors(all_ids)[1]

    def ids_matching(self, flt: Filter | None) -> np.ndarray:
        clause, params = to_sql(flt)
        with self._lock:
            rows = self._conn.execute(f"SELECT id FROM items WHERE {clause}", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def changes_since(self, gen: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids written after ``gen``, ids deleted after ``gen``)."""
        with self._lock:
            up = [r[0] for r in self._conn.execute("SELECT id FROM items WHERE gen > ?", (gen,))]
            gone = [
                r[0] for r in self._conn.execute("SELECT id FROM tombstones WHERE gen > ?", (gen,))
            ]
        return np.asarray(up, dtype=np.int64), np.asarray(gone, dtype=np.int64)

    def find_by_hash(self, digest: str) -> list[int]:
        with self._lock:
            return [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM items WHERE content_hash=? ORDER BY id", (digest,)
                )
            ]

    def content_ref(self, item_id: int) -> tuple[str | None, str | None, str | None] | None:
        """(content_kind, content_hash, text) of an item, or None when the id is unknown."""
        with self._lock:
            return self._conn.execute(
                "SELECT content_kind, content_hash, text_content FROM items WHERE id=?",
                (int(item_id),),
            ).fetchone()

    def hash_in_use(self, digest: str) -> bool:
        with self._lock:
            return (
                self._conn.execute(
                    "SELECT 1 FROM items WHERE content_hash=? AND content_kind='file' LIMIT 1",
                    (digest,),
                ).fetchone()
                is not None
            )

    def file_hashes(self) -> set[str]:
        with self._lock:
            return {
                r[0]
                for r in self._conn.execute(
                    "SELECT DISTINCT content_hash FROM items WHERE content_kind='file'"
                )
            }

    def counts_by(self, column: str) -> dict[str, int]:
        assert column in ("modality", "concept")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {column}, COUNT(*) FROM items GROUP BY {column}"
            ).fetchall()
        return {str(k): int(v) for k, v in rows}
