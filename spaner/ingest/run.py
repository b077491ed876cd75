"""The entry points: :func:`ingest` (into a vector store) and :func:`embed` (into Parquet
files), each run in this process or, with ``engine="ray"``, on a Ray cluster
(:mod:`.ray_engine`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spaner.errors import ConfigError, SpanerError
from spaner.ingest.binding import BoundStore, open_bound_store
from spaner.ingest.driver import LocalEngine, run
from spaner.ingest.reader import Job
from spaner.ingest.report import IngestReport, Problem, Problems
from spaner.ingest.transcripts import Transcriber, resolve_mode
from spaner.ingest.writer import StoreSink

__all__ = ["ingest", "ingest_into", "embed", "ENGINES"]

ENGINES = ("local", "ray")


def _engine(
    engine: str,
    sp: Any,
    checkpoint: Path,
    device: str,
    ray: Any,
    cache: Any = None,
    transcribe: str = "never",
    **kw: Any,
) -> Any:
    if engine == "local":
        return LocalEngine(
            sp, cache, None if transcribe == "never" else Transcriber(sp, transcribe)
        )
    if engine == "ray":
        from spaner.ingest.ray_engine import RayEngine, RayOptions

        return RayEngine(checkpoint, device, ray or RayOptions(), transcribe=transcribe, **kw)
    raise ConfigError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")


def job_size(sp: Any, batch_size: int | None) -> int:
    """Items per encoder job: ``batch_size``, or when None what the streaming path picks for
    the model's device (32 on the CPU; on a CUDA device what fits its free memory, the
    smallest over the modalities)."""
    if batch_size is None:
        from spaner.model.streaming import auto_batch_size

        return min(auto_batch_size(e, sp.model, m, None) for m, e in sp.encoders.items())
    if batch_size <= 0:
        raise SpanerError(f"batch size must be positive, got {batch_size}")
    return batch_size


def ingest_into(
    bound: BoundStore,
    paths: Sequence[str | Path],
    *,
    batch_size: int | None = None,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    engine: str = "local",
    ray: Any = None,
    device: str = "cpu",
    feature_cache: Any = None,
    transcribe: str | None = None,
) -> IngestReport:
    """Ingest ``paths`` into an already opened store+model (see :func:`ingest`)."""
    transcribe = resolve_mode(transcribe)
    batch_size = job_size(bound.spaner, batch_size)
    t_start = time.perf_counter()
    store = bound.store
    report = IngestReport(
        store=str(store.path), checkpoint=str(bound.checkpoint), created=bound.created
    )
    sink = StoreSink(store, bound.spaner, report, Problems(report, on_problem))
    prepare = None
    milvus = None
    if engine == "ray" and getattr(store, "backend", "") == "milvus":
        milvus = store.worker_target()  # the workers write their vectors to Milvus
        last = [-1]

        def prepare(job: Job) -> None:
            job.ids = store.next_ids(len(job.sources), after=last[0])
            last[0] = job.ids[-1]

    eng = _engine(
        engine,
        bound.spaner,
        bound.checkpoint,
        device,
        ray,
        feature_cache,
        transcribe=transcribe,
        milvus=milvus,
    )
    try:
        run(
            paths,
            bound.spaner,
            sink,
            eng,
            report,
            batch_size=batch_size,
            modalities=modalities,
            concept=concept,
            progress=progress,
            on_problem=on_problem,
            prepare=prepare,
        )
    finally:
        if hasattr(eng, "close"):
            eng.close()
    store.save()
    report.store_count = store.count()
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
    batch_size: int | None = None,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    engine: str = "local",
    ray: Any = None,
    feature_cache: Any = None,
    transcribe: str | None = None,
) -> IngestReport:
    """Ingest files, folders and ``.jsonl`` manifests into the store at ``store_dir``.

    The store is created on first use (from ``checkpoint``, or an untrained ``profile``
    model saved into the store); later runs use the recorded checkpoint and refuse another.
    ``engine="ray"`` runs the encoder stage on a Ray actor pool (``ray``: a
    :class:`~spaner.ingest.ray_engine.RayOptions`). ``feature_cache`` (a
    :class:`~spaner.training.features.FeatureCache`, local engine) reuses the frozen features of
    inputs encoded before, e.g. by training. ``transcribe`` (``auto``: speech only, ``always``,
    ``never``; ``None``: ``SPANER_TRANSCRIBE``, else ``auto``) stores Whisper's transcript of
    audio items in ``extra["transcript"]``, which the full-text channel searches
    (:mod:`spaner.ingest.transcripts`). Returns an :class:`IngestReport`; bad inputs are in
    ``report.bad``, never raised.
    """
    transcribe = resolve_mode(transcribe)  # a bad mode is refused before a store is made
    if engine == "ray":
        from spaner.ingest.ray_engine import require_ray

        require_ray()  # before a store is created
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
            engine=engine,
            ray=ray,
            device=device,
            feature_cache=feature_cache,
            transcribe=transcribe,
        )
    finally:
        bound.close()


def embed(
    paths: Sequence[str | Path],
    checkpoint: str | Path,
    out: str | Path,
    *,
    batch_size: int | None = None,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    engine: str = "local",
    ray: Any = None,
    rows_per_file: int = 8192,
) -> IngestReport:
    """Embed ``paths`` with the SPANER ``checkpoint`` into Parquet files under ``out``
    (see :mod:`spaner.ingest.parquet`); content already there (by hash) is skipped."""
    from spaner.ingest.parquet import ParquetSink, require_pyarrow
    from spaner.pipeline import Spaner

    require_pyarrow()
    if engine == "ray":
        from spaner.ingest.ray_engine import require_ray

        require_ray()
    t_start = time.perf_counter()
    ckpt = Path(checkpoint).resolve()
    sp = Spaner.load(ckpt, device=device)
    batch_size = job_size(sp, batch_size)
    report = IngestReport(store=str(out), checkpoint=str(ckpt))
    sink = ParquetSink(out, int(sp.model.dim), report, rows_per_file=rows_per_file)
    eng = _engine(engine, sp, ckpt, device, ray)
    try:
        run(
            paths,
            sp,
            sink,
            eng,
            report,
            batch_size=batch_size,
            modalities=modalities,
            concept=concept,
            progress=progress,
            on_problem=on_problem,
            desc="embed",
        )
    finally:
        sink.close()  # what was encoded is kept, also when the run stops early
        if hasattr(eng, "close"):
            eng.close()
    report.store_count = sink.count()
    report.total_seconds = time.perf_counter() - t_start
    return report
