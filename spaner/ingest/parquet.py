"""The Parquet writer of ``spaner embed``: embeddings and metadata as Parquet files, the
format Spark, DuckDB, LanceDB and pandas read.

Each file ``part-NNNNNN.parquet`` holds up to ``rows_per_file`` rows with the columns
``id`` (int64, unique across the folder), ``modality``, ``source``, ``content_hash``
(sha256 of the content), ``concept`` (null when none), ``extra`` (JSON text) and
``vector`` (``fixed_size_list<float32>[dim]``, unit length). Files appear whole (written
to a temporary name, fsynced, renamed). A run first reads the ``id`` and ``content_hash``
columns already there, so running it again embeds only what is missing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spaner.errors import ConfigError

from .encoder import Result
from .reader import Job
from .report import IngestReport
from .sources import Candidate
from .writer import count_added

__all__ = ["ParquetSink", "require_pyarrow", "read_embeddings"]

log = logging.getLogger(__name__)
_PART = re.compile(r"^part-(\d{6,})\.parquet$")


def require_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "Parquet output needs pyarrow: pip install 'spaner[ray]' (or pip install pyarrow)"
        ) from None
    return pyarrow


def _parts(out: Path) -> list[tuple[int, Path]]:
    return sorted(
        (int(m.group(1)), p) for p in out.iterdir() if p.is_file() and (m := _PART.match(p.name))
    )


def read_embeddings(out: str | Path) -> Any:
    """All part files of ``out`` as one pyarrow Table (in file order)."""
    pa = require_pyarrow()
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for _, p in _parts(Path(out))]
    return pa.concat_tables(tables) if tables else None


class ParquetSink:
    """Writes encoded jobs as Parquet rows under ``out``."""

    def __init__(
        self,
        out: str | Path,
        dim: int,
        report: IngestReport,
        rows_per_file: int = 8192,
    ) -> None:
        pa = require_pyarrow()
        import pyarrow.parquet as pq

        self.out, self.dim, self.report = Path(out), dim, report
        self.rows_per_file = rows_per_file
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"{self.out}: exists and is not a folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.hashes: set[str] = set()
        self.next_id, self.next_part = 0, 0
        for num, p in _parts(self.out):
            try:
                t = pq.read_table(p, columns=["id", "content_hash", "vector"])
            except (OSError, pa.ArrowException) as exc:
                raise ConfigError(f"{p}: not a readable Parquet part ({exc})") from exc
            width = t.schema.field("vector").type
            if getattr(width, "list_size", dim) != dim:
                raise ConfigError(
                    f"{p}: vectors of {width.list_size} dimensions, this model makes {dim}"
                )
            self.hashes.update(t.column("content_hash").to_pylist())
            if t.num_rows:
                self.next_id = max(self.next_id, int(np.max(t.column("id").to_numpy())) + 1)
            self.next_part = num + 1
        self.schema = pa.schema(
            [
                ("id", pa.int64()),
                ("modality", pa.string()),
                ("source", pa.string()),
                ("content_hash", pa.string()),
                ("concept", pa.string()),
                ("extra", pa.string()),
                ("vector", pa.list_(pa.float32(), dim)),
            ]
        )
        self._rows: dict[str, list[Any]] = {n: [] for n in self.schema.names if n != "vector"}
        self._vecs: list[np.ndarray] = []

    def stored(self, digest: str) -> bool:
        return digest in self.hashes

    def write(self, job: Job, cands: Sequence[Candidate], result: Result) -> int:
        """Buffer one job's encoded items; a full buffer becomes a part file."""
        n = len(result.keep)
        if not n:
            return 0
        r = self._rows
        for i in result.keep:
            c = cands[i]
            r["id"].append(self.next_id)
            r["modality"].append(job.modality)
            r["source"].append(c.source)
            r["content_hash"].append(job.digests[i])
            r["concept"].append(job.concepts[i])
            r["extra"].append(json.dumps(dict(c.extra), sort_keys=True))
            self.hashes.add(job.digests[i])
            self.next_id += 1
        self._vecs.append(np.ascontiguousarray(result.vectors, dtype=np.float32))
        count_added(self.report, job.modality, n)
        if len(r["id"]) >= self.rows_per_file:
            self.flush()
        return n

    def flush(self) -> None:
        """Write the buffered rows as the next part file (atomically)."""
        if not self._rows["id"]:
            return
        pa = require_pyarrow()
        import pyarrow.parquet as pq

        from spaner.index.atomic_io import atomic_write_with

        flat = pa.array(np.concatenate(self._vecs).reshape(-1), pa.float32())
        cols = [pa.array(self._rows[n], self.schema.field(n).type) for n in self._rows]
        table = pa.Table.from_arrays(
            [*cols, pa.FixedSizeListArray.from_arrays(flat, self.dim)], schema=self.schema
        )
        path = self.out / f"part-{self.next_part:06d}.parquet"
        atomic_write_with(path, lambda tmp: pq.write_table(table, tmp))
        log.info("wrote %s (%d rows)", path, table.num_rows)
        self.next_part += 1
        self._rows = {n: [] for n in self._rows}
        self._vecs = []

    def count(self) -> int:
        return len(self.hashes)

    def close(self) -> None:
        self.flush()
