"""Milvus backend (pymilvus ``MilvusClient``): same interface, vectors searched by Milvus.

Metadata stays in the store directory's SQLite DB, which remains the source of truth (ids,
metadata, content, and each vector as a BLOB, exactly as for FAISS). The Milvus collection
holds ``id``, ``vector`` and copies of the filterable fields (``modality``, ``concept``,
``source``, ``content_hash`` and the ``extra`` JSON) so filters run inside Milvus. SQLite's
``milvus_gen`` records the last generation known to be in Milvus; on open, anything newer
(rows written, tombstones) is replayed into the collection, and a count mismatch triggers a
full resync from SQLite. With no ``uri`` the collection lives in Milvus Lite at
``<store>/milvus.db``; a server URI (``http://host:19530``) scales out with the same code.

Requires the ``milvus`` extra: ``pip install 'spaner[milvus]'`` (pymilvus, milvus-lite).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .backed_store import MetadataBackedStore
from .base import RepairReport
from .errors import StoreError
from .filters import Filter, to_milvus_expr
from .lexical import text_fields_of
from .records import Item
from .space import EmbeddingSpace, StoreManifest

__all__ = ["MilvusConfig", "MilvusStore", "milvus_rows"]

log = logging.getLogger(__name__)
_SYNC_KEY = "milvus_gen"
_BATCH = 2000
_VARCHARS = ("modality", "concept", "source", "content_hash")


def _require_pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StoreError(
            "the Milvus backend needs pymilvus (and milvus-lite for local files): "
            "pip install 'spaner[milvus]'"
        ) from exc
    return pymilvus


@dataclass
class MilvusConfig:
    """Settings of a Milvus store, saved in ``store.json`` as ``backend_config``."""

    uri: str | None = None  # None: Milvus Lite file <store>/milvus.db
    token: str = ""
    collection: str = "spaner_items"
    index_type: str = "FLAT"  # FLAT (exact), IVF_FLAT, HNSW, … as the server supports
    index_params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)
    normalize: bool = False
    text_fields: list[str] = field(default_factory=list)  # extra fields full-text indexed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MilvusConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def milvus_rows(
    ids: Sequence[int], vectors: np.ndarray, metas: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Collection rows for ``ids``: each meta holds ``modality``, ``concept``, ``source``,
    ``content_hash`` and ``extra`` (a dict), as SQLite's metadata does."""
    rows = []
    for i, v, m in zip(ids, vectors, metas, strict=True):
        row = {"id": int(i), "vector": np.asarray(v, np.float32).tolist(), "extra": m["extra"]}
        row.update({c: m[c] for c in _VARCHARS})
        rows.append(row)
    return rows


class MilvusStore(MetadataBackedStore):
    """Milvus-searched store with SQLite metadata (see module docstring)."""

    backend = "milvus"

    def __init__(self, path: Path, manifest: StoreManifest) -> None:
        super().__init__(path, manifest)
        self.config = MilvusConfig.from_dict(manifest.backend_config)
        pm = _require_pymilvus()
        self._pm = pm
        uri = self.config.uri or str(self.path / "milvus.db")
        self.client = pm.MilvusClient(uri, token=self.config.token)
        self.coll = self.config.collection

    @classmethod
    def create(
        cls, path: str | Path, space: EmbeddingSpace, config: MilvusConfig | None = None
    ) -> MilvusStore:
        cfg = config or MilvusConfig()
        _require_pymilvus()
        fields = list(text_fields_of(cfg.text_fields))  # refused before touching the disk
        p = cls._create_dir(path, space, {**cfg.to_dict(), "text_fields": fields})
        store = cls(p, StoreManifest.read(p))
        store.meta.ensure_lexical(store.text_fields)
        store._create_collection(drop=True)
        store.meta.set_meta(_SYNC_KEY, "0")
        return store

    @classmethod
    def open(cls, path: str | Path, space: EmbeddingSpace | None) -> MilvusStore:
        store = cls(Path(path), cls._read_manifest(path, space))
        store.last_repair = store._reconcile()
        return store

    def _create_collection(self, drop: bool) -> None:
        pm = self._pm
        if self.client.has_collection(self.coll):
            if not drop:
                self.client.load_collection(self.coll)  # reopened: released until loaded
                return
            self.client.drop_collection(self.coll)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pm.DataType.INT64, is_primary=True)
        schema.add_field("vector", pm.DataType.FLOAT_VECTOR, dim=self.dim)
        for name in _VARCHARS:
            schema.add_field(name, pm.DataType.VARCHAR, max_length=4096, nullable=True)
        schema.add_field("extra", pm.DataType.JSON)
        ip = self.client.prepare_index_params()
        ip.add_index(
            field_name="vector",
            index_type=self.config.index_type,
            metric_type="IP",
            params=dict(self.config.index_params),
        )
        self.client.create_collection(
            self.coll, schema=schema, index_params=ip, consistency_level="Strong"
        )

    def _index_close(self) -> None:
        self.client.close()
        if self.config.uri is None:  # stop the in-process Milvus Lite server: frees its lock
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:  # pragma: no cover - older milvus-lite: a subprocess
                return
            server_manager_instance.release_server(str(self.path / "milvus.db"))

    def save(self) -> None:
        self._check_open()
        self.client.flush(self.coll)

    def train(self, vectors: np.ndarray) -> None:
        """Milvus builds and trains its indexes itself; nothing to do."""

    # -- index hooks --------------------------------------------------------------------
    def _rows(self, ids: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
        metas = self.meta.metadata(ids.tolist())
        return milvus_rows(ids.tolist(), vectors, [metas[i] for i in ids.tolist()])

    # -- writes from other processes (scale-out workers) ----------------------------------
    def worker_target(self) -> dict[str, Any]:
        """Where another process on this machine or cluster inserts rows (:func:`milvus_rows`)
        for :meth:`add_indexed`: the server URI (for Milvus Lite, the URI of the server this
        process runs for the store's file), token and collection."""
        uri = self.config.uri
        if uri is None:
            from milvus_lite.server_manager import server_manager_instance

            uri = server_manager_instance.start_and_get_uri(str(self.path / "milvus.db"))
            if uri is None:
                raise StoreError(f"{self.path}: the Milvus Lite server did not start")
        return {"uri": uri, "token": self.config.token, "collection": self.coll}

    def next_ids(self, n: int, after: int = -1) -> list[int]:
        """``n`` unused ids above every stored one (and above ``after``) for rows written
        by workers before :meth:`add_indexed` commits them."""
        start = max(int(self.meta.get_meta("next_id", "0") or 0), after + 1)
        return list(range(start, start + n))

    def add_indexed(
        self,
        vectors: np.ndarray,
        metadata: Sequence[Item | dict[str, Any]],
        ids: Sequence[int],
        written: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Commit the metadata, vectors and content of rows a worker already inserted into
        the collection under ``ids``. SQLite stays the source of truth: ``written`` ids
        (rows the worker inserted) that are not committed here are deleted from Milvus, and
        if the commit fails all of them are; rows left in Milvus by a crash before the commit
        are dropped on the next open (its count check resyncs the collection from SQLite)."""
        extra = sorted(set(written or ()) - set(ids))
        try:
            out = self._add(vectors, metadata, ids, to_index=False)
        except BaseException:
            self._index_remove(np.asarray(sorted(set(written or ()) | set(ids)), np.int64))
            raise
        if extra:
            self._index_remove(np.asarray(extra, np.int64))
        return out

    def _index_add(self, ids: np.ndarray, vectors: np.ndarray, *, upsert: bool = False) -> None:
        write = self.client.upsert if upsert else self.client.insert
        for s in range(0, len(ids), _BATCH):
            write(self.coll, self._rows(ids[s : s + _BATCH], vectors[s : s + _BATCH]))

    def _after_commit(self, gen: int) -> None:
        self.meta.set_meta(_SYNC_KEY, str(gen))

    def _index_remove(self, ids: np.ndarray) -> None:
        for s in range(0, len(ids), _BATCH):
            self.client.delete(self.coll, ids=ids[s : s + _BATCH].tolist())

    def _index_count(self) -> int:
        res = self.client.query(self.coll, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _index_search(
        self, q: np.ndarray, k: int, flt: Filter | None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = {"metric_type": "IP", "params": dict(self.config.search_params)}
        res = self.client.search(
            self.coll,
            data=q.tolist(),
            limit=k,
            filter=to_milvus_expr(flt),
            search_params=params,
            output_fields=["id"],
        )
        d = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for r, hits in enumerate(res):
            for c, h in enumerate(hits[:k]):
                d[r, c] = h["distance"]
                ids[r, c] = h["id"]
        return d, ids

    # -- crash reconciliation -----------------------------------------------------------
    def _reconcile(self) -> RepairReport:
        report = RepairReport(temp_files_removed=self._remove_temp_files())
        self._sync_lexical(report)
        self._create_collection(drop=False)
        synced = int(self.meta.get_meta(_SYNC_KEY, "0") or 0)
        gen = self.meta.generation
        if synced < gen:
            written, deleted = self.meta.changes_since(synced)
            if len(deleted):
                self._index_remove(deleted)
                report.removed_from_index = len(deleted)
            if len(written):
                got, vecs = self.meta.vectors(written.tolist())
                self._index_add(got, vecs, upsert=True)
                report.added_to_index = len(got)
            report.notes.append(f"replayed generations {synced + 1}..{gen} into Milvus")
        if self._index_count() != self.meta.count():
            report.notes.append("Milvus count differs from SQLite; resynced the collection")
            self._resync()
            report.rebuilt = True
        self.meta.set_meta(_SYNC_KEY, str(gen))
        self.meta.prune_tombstones(gen)
        if not report.clean:
            log.warning("%s: repaired on open: %s", self.path, json.dumps(vars(report)))
        return report

    def _resync(self) -> None:
        self._create_collection(drop=True)
        all_ids = self.meta.ids_matching(None)
        for s in range(0, len(all_ids), 50_000):
            got, vecs = self.meta.vectors(all_ids[s : s + 50_000].tolist())
            self._index_add(got, vecs)
