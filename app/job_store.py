"""Durable job records: one SQLite file beside the store (``<parent>/.<store>.jobs.sqlite``).

Every job the server gives out is written here before its id is returned, and again on
every status change (and every few percent of progress), so after a restart
``GET /v1/jobs/{id}`` still answers: a job that was queued or running when the process
stopped is marked ``interrupted`` with the reason. The file sits beside the store, not in
it, because a model activation swaps the store folder by rename while jobs are running.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["JobStore", "jobs_db_path"]

log = logging.getLogger(__name__)

_COLUMNS = (
    "id",
    "kind",
    "status",
    "progress",
    "message",
    "metrics",
    "result",
    "error",
    "created",
    "started",
    "finished",
    "params",
)
_JSON = ("metrics", "result", "params")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL,
    message TEXT NOT NULL, metrics TEXT NOT NULL, result TEXT NOT NULL, error TEXT,
    created REAL NOT NULL, started REAL, finished REAL, params TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema_version', '1');
"""
_INSERT = (
    f"INSERT OR REPLACE INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


def jobs_db_path(store_dir: Path) -> Path:
    """Where the jobs of the service on ``store_dir`` are recorded."""
    p = Path(store_dir).absolute()
    return p.parent / f".{p.name}.jobs.sqlite"


class JobStore:
    """Job rows in SQLite (WAL, ``synchronous=FULL``); thread-safe."""

    def __init__(self, path: Path, keep: int = 10_000) -> None:
        self.path = Path(path)
        self.keep = keep
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        # small rows written often: checkpoint the WAL early and keep it short on disk
        self._conn.execute("PRAGMA wal_autocheckpoint=64")
        self._conn.execute("PRAGMA journal_size_limit=262144")
        self._conn.executescript(_SCHEMA)

    def put(self, doc: dict[str, Any]) -> None:
        """Insert or replace one job (``Job.to_dict()`` plus ``params``)."""
        row = [json.dumps(doc.get(c) or {}) if c in _JSON else doc.get(c) for c in _COLUMNS]
        with self._lock:
            self._conn.execute(_INSERT, row)

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id=?", (job_id,)
            ).fetchone()
        return None if row is None else _doc(row)

    def recent(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` jobs, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created DESC, rowid DESC LIMIT ?",
                (n,),
            ).fetchall()
        return [_doc(r) for r in reversed(rows)]

    def unfinished(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
        return [_doc(r) for r in rows]

    def prune(self) -> None:
        """Forget all but the newest ``keep`` finished jobs."""
        with self._lock:
            self._conn.execute(
                "DELETE FROM jobs WHERE status NOT IN ('queued', 'running') AND id NOT IN "
                "(SELECT id FROM jobs ORDER BY created DESC LIMIT ?)",
                (self.keep,),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _doc(row: tuple[Any, ...]) -> dict[str, Any]:
    doc = dict(zip(_COLUMNS, row, strict=True))
    for c in _JSON:
        doc[c] = json.loads(doc[c])
    return doc
