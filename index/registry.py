"""Backend registry and the two entry points, :func:`create_store` and :func:`open_store`.

Backends register themselves by name (the built-ins lazily, so pymilvus stays optional);
third-party packages may call :func:`register_backend`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .base import VectorStore
from .errors import StoreError
from .space import EmbeddingSpace, StoreManifest

__all__ = ["register_backend", "backend_class", "create_store", "open_store", "available_backends"]

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


def create_store(
    path: str | Path, space: EmbeddingSpace, backend: str = "faiss", config: Any = None
) -> VectorStore:
    """Create an empty store for ``space`` at ``path`` (``config``: the backend's config)."""
    return backend_class(backend).create(path, space, config)


def open_store(
    path: str | Path, space: EmbeddingSpace | None, backend: str | None = None
) -> VectorStore:
    """Open the store at ``path``, checking it holds vectors of ``space``.

    ``space=None`` skips the check (inspection tools only). ``backend`` defaults to the one
    recorded in ``store.json`` and, when given, must match it.
    """
    recorded = StoreManifest.read(Path(path)).backend
    if backend is not None and backend != recorded:
        raise StoreError(f"{path}: a {recorded!r} store, not {backend!r}")
    return backend_class(recorded).open(path, space)
