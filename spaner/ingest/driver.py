"""The run of an ingest or an embed, whatever executes the encoder stage: list the inputs,
read and hash them, group them into jobs, hand the jobs to an engine (this process, or a
Ray actor pool) and, as the results come back in job order, report problems and write each
job through the destination (a vector store or Parquet files) as one unit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .encoder import EncodeStage, Result
from .reader import Job, Reader, Ready, make_jobs
from .report import IngestReport, Problem, Problems, StageTimer
from .sources import Candidate, Skip, discover

__all__ = ["Sink", "Engine", "LocalEngine", "run"]


class Sink(Protocol):
    """A destination: knows which content it holds, writes a job's results as a unit."""

    def stored(self, digest: str) -> bool: ...

    def write(self, job: Job, cands: Sequence[Candidate], result: Result) -> int: ...


class Engine(Protocol):
    """Runs the encoder stage over jobs, yielding their results in job order. ``streams``:
    jobs are taken one by one as results are consumed (else all are listed first)."""

    streams: bool

    def __call__(self, jobs: Iterable[Job]) -> Iterator[Result]: ...


class LocalEngine:
    """The encoder stage in this process."""

    streams = True

    def __init__(self, sp: Any, cache: Any = None, transcriber: Any = None) -> None:
        self.stage = EncodeStage(sp, cache, transcriber=transcriber)

    def __call__(self, jobs: Iterable[Job]) -> Iterator[Result]:
        """Results in job order; the next job is decoded (and its batch assembled on the
        device) on a background thread while this one encodes and is written."""
        from concurrent.futures import ThreadPoolExecutor

        pending: list[Any] = []
        with ThreadPoolExecutor(1, thread_name_prefix="spaner-prepare") as ahead:
            try:
                for job in jobs:
                    pending.append(ahead.submit(self.stage.prepare, job))
                    if len(pending) > 1:
                        yield self.stage.finish(pending.pop(0).result())
                while pending:
                    yield self.stage.finish(pending.pop(0).result())
            finally:
                for fut in pending:
                    fut.cancel()
                self.stage.close()


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="item", desc=desc, disable=not enabled, leave=False)


def run(
    paths: Sequence[str | Path],
    sp: Any,
    sink: Sink,
    engine: Engine,
    report: IngestReport,
    *,
    batch_size: int,
    modalities: Sequence[str] | None = None,
    concept: str | None = None,
    progress: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    prepare: Callable[[Job], None] | None = None,
    desc: str = "ingest",
) -> None:
    """Run the stages over ``paths`` into ``sink``, filling ``report``. ``prepare(job)``
    runs on each job before the engine gets it (e.g. to give it ids)."""
    problem = Problems(report, on_problem)
    reader = Reader(sp, sink.stored, report, problem, modalities)
    with StageTimer(report, "read"):
        found = list(discover(paths))
    # manifest items first: they carry concept and meta, so when a folder holds both a
    # manifest and the files it lists, the manifest's version of each item is the one kept
    cands = sorted(
        (c for c in found if isinstance(c, Candidate)), key=lambda c: "manifest_id" not in c.extra
    )
    for s in found:
        if isinstance(s, Skip):
            problem(s.source, s.problem, s.kind)
    report.seen = len(cands) + sum(isinstance(s, Skip) for s in found)
    open_jobs: dict[int, tuple[Job, list[Candidate]]] = {}

    with _progress(len(cands), progress, desc) as bar:

        def ready() -> Iterator[Ready]:
            for cand in cands:
                with StageTimer(report, "decode"):
                    r = reader.read(cand)
                if r is None:
                    bar.update(1)
                else:
                    yield r

        def jobs() -> Iterator[Job]:
            for job, jc in make_jobs(
                ready(), batch_size, keep_contents=engine.streams, concept=concept
            ):
                if prepare is not None:
                    prepare(job)
                open_jobs[job.index] = (job, jc)
                yield job

        for result in engine(jobs() if engine.streams else list(jobs())):
            job, jc = open_jobs.pop(result.index)
            for key in ("decode", "encode"):
                report.stage_seconds[key] += result.seconds.get(key, 0.0)
            if "transcribe" in result.seconds:  # only runs that transcribe have the stage
                spent = report.stage_seconds.get("transcribe", 0.0) + result.seconds["transcribe"]
                report.stage_seconds["transcribe"] = spent
            if "load" in result.seconds:  # a Ray actor's model loading, with its first job
                report.worker_load_seconds.append(result.seconds["load"])
            bad = {}
            for pos, text, _stage in result.problems:
                problem(job.sources[pos], text)
                bad[pos] = text if _stage == "decode" else None
            with StageTimer(report, "write"):
                sink.write(job, jc, result)
            for pos, digest in enumerate(job.digests):
                reader.settle(digest, bad.get(pos))
            bar.update(len(job.sources))
            bar.set_postfix(bad=len(report.bad), refresh=False)
