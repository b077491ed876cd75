"""Service state: the active space (model + store), the models folder and the job runner.

Store layout (``--store DIR``)::

    DIR/                 a spaner.index store (store.json, metadata.sqlite, content/, index/)
    DIR/checkpoint/      the model whose space the store holds (fixes the space)
    DIR/models/<id>/     checkpoints trained by few-shot fit jobs, activatable by id

Requests read :attr:`ServiceState.active` under a shared lock; activating a model builds a
new store beside ``DIR`` and swaps it in under the exclusive lock, so a request sees either
the old space or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from spaner.index import EmbeddingSpace, VectorStore, create_store, open_store
from spaner.index.registry import remove_stale_builds
from spaner.index.store_lock import WriterLock, acquire_writer_lock

from spaner.errors import ConfigError
from spaner.model.checkpoint import checkpoint_hash
from spaner.pipeline import Spaner

from .job_store import JobStore, jobs_db_path
from .jobs import JobRunner
from .rwlock import RWLock
from .settings import Settings

__all__ = ["ActiveSpace", "ServiceState", "CHECKPOINT_DIR", "MODELS_DIR"]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
MODELS_DIR = "models"
#: the store -> model record that ``spaner ingest`` / ``spaner search`` read (spaner.ingest.binding)
BINDING_NAME = "spaner.json"
_CKPT_PREFIX = ".ckpt-"


def write_binding(store_dir: Path, space_id: str, dim: int, profile: str | None) -> None:
    """Record ``checkpoint/`` as the store's model, so the ingest/search CLIs use it too."""
    doc = {"checkpoint": CHECKPOINT_DIR, "space_id": space_id, "dim": dim, "profile": profile}
    tmp = store_dir / f".{BINDING_NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, store_dir / BINDING_NAME)


def _bound_checkpoint(store_dir: Path) -> Path | None:
    """The checkpoint ``spaner ingest`` recorded for this store, if any."""
    f = store_dir / BINDING_NAME
    if not f.is_file():
        return None
    rec = json.loads(f.read_text(encoding="utf-8")).get("checkpoint")
    if not rec:
        return None
    p = Path(rec)
    return p if p.is_absolute() else store_dir / p


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
    """Create ``settings.store`` with its model: ``--checkpoint`` or an untrained ``--profile``.

    The store, its ``checkpoint/`` and ``spaner.json`` appear together (``create_store``
    builds them in a hidden sibling folder and renames it), so a crash mid-creation leaves no
    half-made store: the next start creates it again."""
    store_dir = settings.store
    if store_dir.exists() and any(store_dir.iterdir()):
        raise ConfigError(
            f"{store_dir} exists, is not empty and is not a SPANER store (no store.json)"
        )
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(store_dir, (_CKPT_PREFIX,))
    tmp = Path(tempfile.mkdtemp(dir=store_dir.parent, prefix=f".{store_dir.name}{_CKPT_PREFIX}"))
    try:
        if settings.checkpoint is not None:
            src = Spaner.load(settings.checkpoint, device=settings.device)
            shutil.copytree(settings.checkpoint, tmp / "c")
            spaner = Spaner(src.model, src.encoders, tmp / "c", src.calibration)
        else:
            spaner = Spaner.from_profile(settings.profile, device=settings.device)
            spaner.save(
                tmp / "c",
                extra={"note": f"untrained {settings.profile} model, created by spaner serve"},
            )
        space = _space_of(spaner)

        def prepare(build: Path) -> None:
            os.replace(tmp / "c", build / CHECKPOINT_DIR)
            write_binding(build, space.checkpoint_hash, space.dim, spaner.model.config.profile)

        store = create_store(store_dir, space, prepare=prepare)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    spaner.checkpoint = store_dir / CHECKPOINT_DIR
    log.info("created store %s (model %s)", store_dir, model_id_of(space.checkpoint_hash))
    return ActiveSpace(spaner, store, space)


def _existing_store(settings: Settings) -> ActiveSpace:
    store_dir = settings.store
    ckpt = store_dir / CHECKPOINT_DIR
    if not ckpt.is_dir():
        bound = _bound_checkpoint(store_dir)  # a store made by `spaner ingest`
        if settings.checkpoint is None and bound is not None and bound.is_dir():
            shutil.copytree(bound, ckpt)
        elif settings.checkpoint is None:
            raise ConfigError(
                f"{store_dir} has no {CHECKPOINT_DIR}/ folder: pass --checkpoint with the model "
                "that produced its vectors"
            )
        else:
            shutil.copytree(settings.checkpoint, ckpt)
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
    write_binding(store_dir, space.checkpoint_hash, space.dim, spaner.model.config.profile)
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
        from .activation import recover_activation

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
