"""Background jobs (few-shot fits, activations): one worker thread, progress in memory.

Jobs live as long as the process; ``GET /v1/jobs/{id}`` reads them. One worker keeps a
2-core machine responsive: training and re-embedding never run side by side.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from spaner.errors import SpanerError

__all__ = ["Job", "JobRunner", "JobStatus"]

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed"]


@dataclass
class Job:
    id: str
    kind: str
    status: JobStatus = "queued"
    progress: float = 0.0
    message: str = "queued"
    metrics: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def update(self, progress: float | None = None, message: str | None = None) -> None:
        """Report progress (clamped to 0..1, never going backwards) and a short status line."""
        if progress is not None:
            self.progress = max(self.progress, min(1.0, max(0.0, float(progress))))
        if message is not None:
            self.message = message

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class JobRunner:
    """Runs ``fn(job) -> result dict`` on one worker thread; keeps the last ``keep`` jobs."""

    def __init__(self, keep: int = 200) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spaner-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, kind: str, fn: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self._keep:
                oldest = next(iter(self._jobs.values()))
                if not oldest.done:
                    break
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: Callable[[Job], dict[str, Any]]) -> None:
        job.status, job.started, job.message = "running", time.time(), "running"
        try:
            result = fn(job) or {}
            job.metrics = dict(result.pop("metrics", {}) or {})
            job.result = result
            job.status, job.progress, job.message = "succeeded", 1.0, "done"
        except SpanerError as exc:
            job.status, job.error, job.message = "failed", str(exc), "failed"
        except Exception as exc:  # a bug: keep the traceback in the log, a message in the job
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error, job.message = "failed", f"internal error: {exc}", "failed"
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self, kind: str | None = None) -> list[Job]:
        return [j for j in self.list() if not j.done and (kind is None or j.kind == kind)]

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job is done (tests, CLI); raises TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None:
                raise KeyError(job_id)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(0.05)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
