"""Service state: the active space (model + store), the models folder and the job runner.

Store layout (``--store DIR``; :mod:`spaner.ingest.binding` owns it, ``spaner ingest`` and
``spaner search`` use the same)::

    DIR/                 a spaner.index store (store.json, metadata.sqlite, content/, index/)
    DIR/spaner.json      the binding record: which checkpoint made the store's vectors
    DIR/checkpoint/      the model whose space the store holds (fixes the space)
    DIR/models/<id>/     checkpoints trained by few-shot fit jobs, activatable by id

Requests read :attr:`ServiceState.active` under a shared lock; activating a model
(:mod:`.activation`) builds a new store beside ``DIR`` and swaps it in under the exclusive
lock, so a request sees either the old space or the new one, never a mix. This module holds
that state and opens it; it imports neither the activation nor the model registry, which
act on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spaner.index import EmbeddingSpace, VectorStore, open_store
from spaner.index.store_lock import WriterLock, acquire_writer_lock

from spaner.errors import ConfigError
from spaner.ingest.binding import (
    CHECKPOINT_DIR,
    MODELS_DIR,
    adopt_checkpoint,
    create_bound_store,
    write_binding,
)
from spaner.model.checkpoint import checkpoint_hash
from spaner.pipeline import Spaner

from .job_store import JobStore, jobs_db_path
from .jobs import JobRunner
from .recovery import recover_activation
from .rwlock import RWLock
from .settings import Settings

__all__ = ["ActiveSpace", "ServiceState", "model_id_of", "CHECKPOINT_DIR", "MODELS_DIR"]

log = logging.getLogger(__name__)


def model_id_of(space_id: str) -> str:
    """Short model id: the first 12 hex digits of the checkpoint hash."""
    return space_id[:12]


@dataclass(frozen=True)
class ActiveSpace:
    """What a request uses: one model and the store of vectors in its space."""

    spaner: Spaner
    store: VectorStore
    space: EmbeddingSpace

    @property
    def model_id(self) -> str:
        return model_id_of(self.space.checkpoint_hash)


def _apply_limits(spaner: Spaner, settings: Settings) -> Spaner:
    limits = settings.limits()
    for enc in spaner.encoders.values():
        enc.limits = limits
    return spaner


def _space_of(spaner: Spaner) -> EmbeddingSpace:
    assert spaner.space_id is not None, "model must be saved or loaded from a checkpoint"
    return EmbeddingSpace(spaner.space_id, int(spaner.model.dim))


def _new_store(settings: Settings) -> ActiveSpace:
    """Create ``settings.store`` with its model: ``--checkpoint`` or an untrained ``--profile``
    (crash-safe: :func:`spaner.ingest.binding.create_bound_store`)."""
    bound = create_bound_store(
        settings.store,
        checkpoint=settings.checkpoint,
        profile=settings.profile,
        device=settings.device,
        note=f"untrained {settings.profile} model, created by spaner serve",
    )
    space = _space_of(bound.spaner)
    log.info("created store %s (model %s)", settings.store, model_id_of(space.checkpoint_hash))
    return ActiveSpace(bound.spaner, bound.store, space)


def _existing_store(settings: Settings) -> ActiveSpace:
    store_dir = settings.store
    ckpt = adopt_checkpoint(store_dir, settings.checkpoint)  # an older layout: copied in
    spaner = Spaner.load(ckpt, device=settings.device)
    space = _space_of(spaner)
    if (
        settings.checkpoint is not None
        and checkpoint_hash(settings.checkpoint) != space.checkpoint_hash
    ):
        raise ConfigError(
            f"{store_dir} holds vectors of model {model_id_of(space.checkpoint_hash)}, not of "
            f"--checkpoint {settings.checkpoint}; drop --checkpoint, or fit/activate through the API"
        )
    store = open_store(store_dir, space)
    write_binding(store_dir, space, spaner.model.config.profile)
    return ActiveSpace(spaner, store, space)


class ServiceState:
    """Everything the routes share. Build with :meth:`open`; :meth:`close` on shutdown."""

    def __init__(
        self, settings: Settings, active: ActiveSpace, writer_lock: WriterLock | None = None
    ) -> None:
        self.settings = settings
        self._active = active
        self.lock = RWLock()
        #: the store's item count as ``/v1/health`` last read it (answered while the store is busy)
        self.last_item_count: int | None = None
        self.jobs = JobRunner(store=JobStore(jobs_db_path(settings.store)))
        self._writer_lock = writer_lock
        self._settle_interrupted()

    def _settle_interrupted(self) -> None:
        """An activation killed after its switch did finish: record it as such."""
        active = self._active.model_id
        for job in self.jobs.interrupted:
            target, prev = job.params.get("model_id"), job.params.get("from")
            if job.kind == "activate" and target == active and prev != active:
                job.status, job.progress, job.message = "succeeded", 1.0, "done"
                job.result = {"model_id": active, "previous": prev, "changed": True}
                job.error = None
                self.jobs.save(job)
            elif job.kind == "activate":
                job.error = f"{job.error}; model {active} (the previous one) is still active"
                self.jobs.save(job)

    @classmethod
    def open(cls, settings: Settings) -> ServiceState:
        """Open ``settings.store``, creating it (and its model) when it does not exist.

        The service holds the store's writer lock until :meth:`close` (across model
        activations, which swap the store folder): ``spaner ingest`` on the same store is
        refused meanwhile with a message naming this server."""
        lock = acquire_writer_lock(settings.store)
        try:
            recover_activation(settings.store)
            if (settings.store / "store.json").is_file():
                active = _existing_store(settings)
            else:
                active = _new_store(settings)
            _apply_limits(active.spaner, settings)
            (settings.store / MODELS_DIR).mkdir(exist_ok=True)
        except BaseException:
            lock.release()
            raise
        return cls(settings, active, lock)

    @property
    def store_dir(self) -> Path:
        return self.settings.store

    @property
    def models_dir(self) -> Path:
        return self.settings.store / MODELS_DIR

    @property
    def content_dir(self) -> Path:
        return self.settings.store / "content"

    @contextmanager
    def reading(self) -> Iterator[ActiveSpace]:
        """The active space, guaranteed not to be swapped out while the block runs."""
        with self.lock.read():
            yield self._active

    @contextmanager
    def try_reading(self) -> Iterator[ActiveSpace | None]:
        """As :meth:`reading` if no write or space switch holds or awaits the lock; else ``None``
        at once (for probes that must never wait)."""
        with self.lock.try_read() as got:
            yield self._active if got else None

    @contextmanager
    def writing(self) -> Iterator[ActiveSpace]:
        """Exclusive access (writes and the space switch)."""
        with self.lock.write():
            yield self._active

    def peek(self) -> ActiveSpace:
        """The active space without locking (for cheap, read-only facts such as its id)."""
        return self._active

    def swap(self, new: ActiveSpace) -> ActiveSpace:
        """Replace the active space; the caller holds :meth:`writing`. Returns the old one."""
        old, self._active = self._active, _apply_limits_active(new, self.settings)
        return old

    def close(self) -> None:
        self.jobs.shutdown()
        try:
            with self.lock.write():
                self._active.store.close()
        finally:
            if self._writer_lock is not None:
                self._writer_lock.release()


def _apply_limits_active(active: ActiveSpace, settings: Settings) -> ActiveSpace:
    _apply_limits(active.spaner, settings)
    return active
