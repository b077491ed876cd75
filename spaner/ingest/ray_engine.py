"""The encoder stage on a Ray cluster: a Ray Data pipeline whose ``map_batches`` runs an
actor pool, each actor loading the SPANER checkpoint once (CPU threads or GPUs per actor).

The driver lists, reads and hashes the inputs (so what is already stored is never sent),
and makes the same jobs as a single-process run; each job travels as one row without its
file contents, which the actor reads again from the shared file system (checking they still
hash the same) before decoding and encoding. Results come back in job order
(``preserve_order``), and the driver writes each job as one unit. With a Milvus store the
actors insert their vectors into the collection themselves and the driver then commits the
metadata (see :meth:`spaner.index.milvus_store.MilvusStore.add_indexed`).

Requires the ``ray`` extra: ``pip install 'spaner[ray]'``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spaner.errors import ConfigError

from .encoder import EncodeStage, Result
from .reader import Job
from .transcripts import with_transcript

__all__ = ["RayOptions", "RayEngine", "require_ray"]

log = logging.getLogger(__name__)
INSTALL_HINT = "--engine ray needs Ray: pip install 'spaner[ray]'"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ConfigError with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


@dataclass
class RayOptions:
    """Where and how wide the encoder stage runs."""

    address: str | None = None  # None: a Ray already initialised here, else a local one
    workers: int = 1  # actors, one model each
    gpus_per_worker: float = 0.0
    cpus_per_worker: float | None = None  # default: the cluster's CPUs / workers

    def check(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_worker is not None and self.cpus_per_worker <= 0:
            raise ConfigError(f"CPUs per worker must be positive, got {self.cpus_per_worker}")


class _EncodeActor:
    """One Ray actor: the model, loaded once; a job row in, a result row out."""

    def __init__(
        self,
        checkpoint: str,
        device: str,
        threads: int,
        milvus: dict[str, Any] | None,
        transcribe: str = "never",
    ) -> None:
        import torch

        from spaner.pipeline import Spaner

        from .transcripts import Transcriber

        t0 = time.perf_counter()
        torch.set_num_threads(max(1, threads))
        sp = Spaner.load(Path(checkpoint), device=device)
        transcriber = None if transcribe == "never" else Transcriber(sp, transcribe)
        self.stage = EncodeStage(sp, transcriber=transcriber)
        self.load_seconds = time.perf_counter() - t0  # reported with this actor's first job
        self.milvus = milvus
        self.client = None
        if milvus is not None:
            from pymilvus import MilvusClient

            self.client = MilvusClient(milvus["uri"], token=milvus.get("token", ""))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results, vectors = [], []
        for row in batch["job"]:
            job = Job.from_json(json.loads(row))
            res = self.stage(job)
            if self.load_seconds is not None:
                res.seconds["load"], self.load_seconds = self.load_seconds, None
            if self.client is not None and res.keep:
                self._insert(job, res)
            results.append(json.dumps(res.to_json()))
            vectors.append(res.vectors.tobytes())
        return {
            "result": np.array(results, dtype=object),
            "vectors": np.array(vectors, dtype=object),
        }

    def _insert(self, job: Job, res: Result) -> None:
        from spaner.index.milvus_store import milvus_rows

        metas = [
            {
                "modality": job.modality,
                "concept": job.concepts[i],
                "source": job.sources[i],
                "content_hash": job.digests[i],
                "extra": with_transcript(job.extras[i], res.transcripts.get(i)),
            }
            for i in res.keep
        ]
        rows = milvus_rows([job.ids[i] for i in res.keep], res.vectors, metas)
        self.client.insert(self.milvus["collection"], rows)
        res.indexed = True


class RayEngine:
    """Runs jobs through the actor pool (see the module docstring)."""

    streams = False  # the jobs are listed before the pipeline starts

    def __init__(
        self,
        checkpoint: str | Path,
        device: str,
        options: RayOptions,
        milvus: dict[str, Any] | None = None,
        transcribe: str = "never",
    ) -> None:
        options.check()
        self.ray = require_ray()
        self.checkpoint, self.device, self.options, self.milvus = (
            str(checkpoint),
            device,
            options,
            milvus,
        )
        self.transcribe = transcribe  # the actors' Transcriber mode (spaner.ingest.transcripts)
        self._started = False

    def _init(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(
                address=self.options.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            self._started = True

    def __call__(self, jobs: Iterable[Job]) -> Iterator[Result]:
        jobs = list(jobs)
        if not jobs:
            return iter(())
        self._init()
        return self._results(jobs)

    def _results(self, jobs: list[Job]) -> Iterator[Result]:
        ray = self.ray
        opts = self.options
        cpus = opts.cpus_per_worker
        if cpus is None:
            total = float(ray.cluster_resources().get("CPU", 1.0))
            # fewer CPUs than workers: a share each, so that every actor can start
            cpus = (
                max(1.0, total // opts.workers) if total >= opts.workers else total / opts.workers
            )
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ds = ray.data.from_items(
            [{"job": json.dumps(j.to_json())} for j in jobs],
            override_num_blocks=min(len(jobs), 8 * opts.workers),
        )
        extra = {"num_gpus": opts.gpus_per_worker} if opts.gpus_per_worker else {}
        ds = ds.map_batches(
            _EncodeActor,
            fn_constructor_kwargs={
                "checkpoint": self.checkpoint,
                "device": self.device,
                "threads": max(1, int(cpus)),
                "milvus": self.milvus,
                "transcribe": self.transcribe,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=opts.workers),
            num_cpus=cpus,
            **extra,
        )
        for row in ds.iter_rows():
            yield Result.from_json(json.loads(row["result"]), row["vectors"])

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False
