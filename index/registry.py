"""Backend registry and the two entry points, :func:`create_store` and :func:`open_store`.

Backends register themselves by name (the built-ins lazily, so pymilvus stays optional);
third-party packages may call :func:`register_backend`.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic_io import fsync_dir, move_into_place
from .base import VectorStore
from .errors import StoreError
from .space import EmbeddingSpace, StoreManifest
from .store_lock import acquire_writer_lock

__all__ = ["register_backend", "backend_class", "create_store", "open_store", "available_backends"]

log = logging.getLogger(__name__)
#: prefix of the sibling folder a store is built in before it gets its name
BUILD_PREFIX = ".creating-"

_BACKENDS: dict[str, str | type[VectorStore]] = {
    "faiss": "spaner.index.faiss_store:FaissStore",
    "milvus": "spaner.index.milvus_store:MilvusStore",
}


def register_backend(name: str, cls: type[VectorStore] | str, *, replace: bool = False) -> None:
    """Register a store class (or ``"module:Class"`` path) under ``name``."""
    if name in _BACKENDS and not replace:
        raise ValueError(f"vector-store backend {name!r} is already registered")
    _BACKENDS[name] = cls


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def backend_class(name: str) -> type[VectorStore]:
    """The store class registered as ``name`` (imported on first use)."""
    try:
        ref = _BACKENDS[name]
    except KeyError:
        raise StoreError(
            f"unknown vector-store backend {name!r}; known: {available_backends()}"
        ) from None
    if isinstance(ref, str):
        module, _, attr = ref.partition(":")
        ref = getattr(importlib.import_module(module), attr)
        _BACKENDS[name] = ref
    return ref


def remove_stale_builds(path: str | Path, prefixes: tuple[str, ...] = (BUILD_PREFIX,)) -> int:
    """Delete the hidden build folders ``.<name><prefix>*`` an interrupted creation of the store
    at ``path`` left beside it; returns how many."""
    p = Path(path)
    n = 0
    if p.parent.is_dir():
        for prefix in prefixes:
            for stale in p.parent.glob(f".{p.name}{prefix}*"):
                shutil.rmtree(stale, ignore_errors=True)
                n += 1
    if n:
        log.warning("%s: removed %d folder(s) left by an interrupted store creation", p, n)
    return n


def create_store(
    path: str | Path,
    space: EmbeddingSpace,
    backend: str = "faiss",
    config: Any = None,
    *,
    prepare: Callable[[Path], None] | None = None,
) -> VectorStore:
    """Create an empty store for ``space`` at ``path`` (``config``: the backend's config).

    Crash-safe: the store is built in a hidden sibling folder (``prepare(folder)`` may add
    files to it, e.g. the model) and renamed to ``path`` once complete, so a crash leaves
    either no store or a whole one; build folders of an interrupted creation are removed.
    ``path`` must not exist or be an empty folder. The caller holds the store's writer lock
    (:mod:`.store_lock`) from now on, until the store is closed."""
    cls = backend_class(backend)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with acquire_writer_lock(target):
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise StoreError(f"{target}: exists and is not empty; open_store() it instead")
        remove_stale_builds(target)
        _build(cls, target, space, config, prepare)
        return _open_locked(cls, target, space)


def _build(
    cls: type[VectorStore],
    target: Path,
    space: EmbeddingSpace,
    config: Any,
    prepare: Callable[[Path], None] | None,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{BUILD_PREFIX}", dir=target.parent))
    try:
        build = tmp / target.name
        cls.create(build, space, config).close()
        if prepare is not None:
            prepare(build)
        fsync_dir(build)
        move_into_place(build, target)  # the commit point (replaces an empty folder on POSIX)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_locked(cls: type[VectorStore], path: Path, space: EmbeddingSpace | None) -> VectorStore:
    """Open with the writer lock held by the returned store until it is closed."""
    lock = acquire_writer_lock(path)
    try:
        store = cls.open(path, space)
    except BaseException:
        lock.release()
        raise
    store._writer_lock = lock
    return store


def open_store(
    path: str | Path,
    space: EmbeddingSpace | None,
    backend: str | None = None,
    *,
    read_only: bool = False,
) -> VectorStore:
    """Open the store at ``path``, checking it holds vectors of ``space``.

    ``space=None`` skips the check (inspection tools only). ``backend`` defaults to the one
    recorded in ``store.json`` and, when given, must match it.

    A writer (the default) takes the store's writer lock first and raises
    :class:`~.store_lock.StoreLockedError`, naming the holder, while another process has it;
    the store releases it on ``close()``. ``read_only=True`` takes no lock, never writes
    (repairs stay in memory) and refuses ``add``/``delete``: safe beside a running writer.
    """
    recorded = StoreManifest.read(Path(path)).backend
    if backend is not None and backend != recorded:
        raise StoreError(f"{path}: a {recorded!r} store, not {backend!r}")
    cls = backend_class(recorded)
    if read_only:
        opener = getattr(cls, "open_read_only", None)
        if opener is None:
            raise StoreError(f"{path}: the {recorded!r} backend cannot be opened read-only")
        return opener(path, space)
    return _open_locked(cls, Path(path), space)
