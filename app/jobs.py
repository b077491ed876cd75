"""Background jobs (few-shot fits, activations): one worker thread, recorded durably.

One worker keeps a 2-core machine responsive: training and re-embedding never run side by
side. With a :class:`~.job_store.JobStore` every job is recorded before its id is given
out and on every change, so ``GET /v1/jobs/{id}`` answers after a restart too: jobs that
were queued or running when the process stopped come back ``interrupted`` with the reason.
A job can be cancelled: a queued one at once, a running one at its next progress update
(unless it has entered a step that must finish, such as the switch of an activation).
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

from .errors import Conflict
from .job_store import JobStore
from .killpoints import progress_point

__all__ = ["Job", "JobRunner", "JobStatus", "JobCancelled"]

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
DONE = ("succeeded", "failed", "cancelled", "interrupted")
#: progress is recorded durably each time it crosses another step of this size
_PERSIST_STEP = 0.02


class JobCancelled(Exception):
    """Raised inside a job at its next progress update after a cancel request."""


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
    params: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    cancellable: bool = field(default=True, repr=False)
    _on_change: Callable[[Job, bool], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, progress: float | None = None, message: str | None = None) -> None:
        """Report progress (clamped to 0..1, never going backwards) and a short status line;
        raises :class:`JobCancelled` when a cancel was requested."""
        before = self.progress
        if progress is not None:
            self.progress = max(self.progress, min(1.0, max(0.0, float(progress))))
        if message is not None:
            self.message = message
        progress_point(f"{self.kind}:{self.message}")
        with self._lock:
            if self.cancel_requested and self.cancellable:
                raise JobCancelled(self.id)
        if self._on_change is not None:
            step = int(self.progress / _PERSIST_STEP) != int(before / _PERSIST_STEP)
            self._on_change(self, step)

    def no_more_cancel(self) -> None:
        """Enter a step that must finish once begun; raises :class:`JobCancelled` if a cancel
        came first (atomically with :meth:`JobRunner.cancel`)."""
        with self._lock:
            if self.cancel_requested:
                raise JobCancelled(self.id)
            self.cancellable = False

    @property
    def done(self) -> bool:
        return self.status in DONE

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in self.__dataclass_fields__
            if not k.startswith("_") and k not in ("params", "cancellable")
        }

    def record(self) -> dict[str, Any]:
        return {**self.to_dict(), "params": self.params}


class JobRunner:
    """Runs ``fn(job) -> result dict`` on one worker thread; keeps the last ``keep`` jobs in
    memory and, with a ``store``, every job on disk."""

    def __init__(self, keep: int = 200, store: JobStore | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spaner-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._store = store
        self.interrupted: list[Job] = []
        if store is not None:
            self._recover(store)

    def _recover(self, store: JobStore) -> None:
        """Mark jobs a previous process left queued or running as ``interrupted``."""
        now = time.time()
        for doc in store.unfinished():
            was = doc["status"]
            job = _from_doc(doc)
            job.status, job.finished = "interrupted", now
            job.error = (
                f"the server stopped while this job was {was} ({job.message}); it did not "
                "finish: start it again"
            )
            job.message = "interrupted"
            store.put(job.record())
            self.interrupted.append(job)
        store.prune()
        mine = {j.id: j for j in self.interrupted}  # the same objects, so later fixes show
        for doc in store.recent(self._keep):
            self._jobs[doc["id"]] = mine.get(doc["id"]) or _from_doc(doc)
        if self.interrupted:
            log.warning("%d job(s) were interrupted by the last stop", len(self.interrupted))

    def _persist(self, job: Job, step: bool = True) -> None:
        if self._store is not None and step:
            try:
                self._store.put(job.record())
            except Exception:  # noqa: BLE001 - e.g. a full disk; the job itself goes on
                log.warning("could not record job %s", job.id, exc_info=True)

    def save(self, job: Job) -> None:
        """Record ``job`` now (after changing it outside the runner)."""
        self._persist(job)

    def submit(
        self, kind: str, fn: Callable[[Job], dict[str, Any]], params: dict[str, Any] | None = None
    ) -> Job:
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, params=dict(params or {}))
        job._on_change = self._persist
        if self._store is not None:  # recorded before the id is given out
            self._store.put(job.record())
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
        with job._lock:
            if job.done:  # cancelled while queued
                return
            job.status, job.started, job.message = "running", time.time(), "running"
        self._persist(job)
        try:
            result = fn(job) or {}
            job.metrics = dict(result.pop("metrics", {}) or {})
            job.result = result
            job.status, job.progress, job.message = "succeeded", 1.0, "done"
        except JobCancelled:
            job.status, job.message, job.error = "cancelled", "cancelled", "cancelled on request"
        except SpanerError as exc:
            job.status, job.error, job.message = "failed", str(exc), "failed"
        except Exception as exc:  # a bug: keep the traceback in the log, a message in the job
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error, job.message = "failed", f"internal error: {exc}", "failed"
        finally:
            job.finished = time.time()
            self._persist(job)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now, or ask a running one to stop; None when unknown.

        Raises :class:`~.errors.Conflict` when the job has finished or cannot stop any more."""
        job = self.get(job_id)
        if job is None:
            return None
        with job._lock:
            if job.done:
                raise Conflict(f"job {job_id} has already finished ({job.status})")
            if not job.cancellable:
                raise Conflict(
                    f"job {job_id} is in a step that cannot be cancelled ({job.message}); "
                    "it finishes in a moment"
                )
            job.cancel_requested = True
            if job.status == "queued":
                job.status, job.message, job.error = (
                    "cancelled",
                    "cancelled",
                    "cancelled on request",
                )
                job.finished = time.time()
        self._persist(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None and self._store is not None:
            doc = self._store.get(job_id)
            job = None if doc is None else _from_doc(doc)
        return job

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
        if self._store is not None:
            self._store.close()


def _from_doc(doc: dict[str, Any]) -> Job:
    fields_ = {k: doc[k] for k in Job.__dataclass_fields__ if not k.startswith("_") and k in doc}
    return Job(**fields_)
