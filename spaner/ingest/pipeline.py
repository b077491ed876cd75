"""The single-process ingest: :func:`ingest` opens (or creates) the store with its model and
runs the stages of :mod:`spaner.ingest` in this process (:func:`ingest_into`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spaner.errors import SpanerError

from .binding import BoundStore, open_bound_store
from .encoder import encode_batch
from .reader import Decoded, Reader
from .report import IngestReport, Problem, Problems, StageTimer
from .sources import Candidate, Skip, discover
from .writer import Writer

__all__ = ["ingest", "ingest_into"]


class _Pipeline:
    """The single-process run: decoded inputs are buffered per modality; a full buffer is
    encoded and written as one batch."""

    def __init__(
        self,
        bound: BoundStore,
        report: IngestReport,
        batch_size: int,
        modalities: Sequence[str] | None,
        concept: str | None,
        on_problem: Callable[[Problem], None] | None,
    ) -> None:
        self.report = report
        self.sp = bound.spaner
        self.batch_size = batch_size
        self.problem = Problems(report, on_problem)
        self.reader = Reader(self.sp, bound.store, report, self.problem, modalities)
        self.writer = Writer(bound.store, report, concept)
        self.buffers: dict[str, list[Decoded]] = {}

    def decode(self, cand: Candidate) -> Decoded | None:
        with StageTimer(self.report, "decode"):
            return self.reader.decode(cand)

    def push(self, item: Decoded) -> int:
        buf = self.buffers.setdefault(item.cand.modality, [])
        buf.append(item)
        return self.flush(item.cand.modality) if len(buf) >= self.batch_size else 0

    def flush(self, modality: str) -> int:
        items = self.buffers.pop(modality, [])
        if not items:
            return 0
        with StageTimer(self.report, "encode"):
            keep, vecs = encode_batch(
                self.sp,
                modality,
                [it.raw for it in items],
                [it.cand.source for it in items],
                self.problem,
            )
        if not keep:
            return 0
        items = [items[i] for i in keep]
        with StageTimer(self.report, "write"):
            return self.writer.write(
                modality, [it.cand for it in items], [it.content for it in items], vecs
            )

    def flush_all(self) -> int:
        return sum(self.flush(m) for m in list(self.buffers))


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="item", desc="ingest", disable=not enabled, leave=False)


def ingest_into(
    bound: BoundStore,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestReport:
    """Ingest ``paths`` into an already opened store+model (see :func:`ingest`)."""
    if batch_size <= 0:
        raise SpanerError(f"batch size must be positive, got {batch_size}")
    t_start = time.perf_counter()
    report = IngestReport(
        store=str(bound.store.path), checkpoint=str(bound.checkpoint), created=bound.created
    )
    pipe = _Pipeline(bound, report, batch_size, modalities, concept, on_problem)
    with StageTimer(report, "read"):
        found = list(discover(paths))
    # manifest items first: they carry concept and meta, so when a folder holds both a
    # manifest and the files it lists, the manifest's version of each item is the one kept
    cands = sorted(
        (c for c in found if isinstance(c, Candidate)), key=lambda c: "manifest_id" not in c.extra
    )
    for s in found:
        if isinstance(s, Skip):
            pipe.problem(s.source, s.problem, s.kind)
    report.seen = len(cands) + sum(isinstance(s, Skip) for s in found)
    with _progress(len(cands), progress) as bar:
        for cand in cands:
            item = pipe.decode(cand)
            if item is not None:
                pipe.push(item)
            bar.update(1)
        pipe.flush_all()
    bound.store.save()
    report.store_count = bound.store.count()
    report.total_seconds = time.perf_counter() - t_start
    return report


def ingest(
    paths: Sequence[str | Path],
    store_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    profile: str | None = None,
    backend: str = "faiss",
    backend_config: Any = None,
    batch_size: int = 32,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> IngestReport:
    """Ingest files, folders and ``.jsonl`` manifests into the store at ``store_dir``.

    The store is created on first use (from ``checkpoint``, or an untrained ``profile``
    model saved into the store); later runs use the recorded checkpoint and refuse another.
    Returns an :class:`IngestReport`; bad inputs are in ``report.bad``, never raised.
    """
    bound = open_bound_store(
        store_dir,
        checkpoint=checkpoint,
        profile=profile,
        modalities=modalities,
        create=True,
        backend=backend,
        backend_config=backend_config,
        device=device,
    )
    try:
        return ingest_into(
            bound,
            paths,
            batch_size=batch_size,
            modalities=modalities,
            concept=concept,
            progress=progress,
            on_problem=on_problem,
        )
    finally:
        bound.close()
