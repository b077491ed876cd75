"""Typed errors of the vector-store layer.

Every error a caller can cause (bad vectors, a store built for another embedding space,
an unknown id, an untrained ANN index) is a :class:`StoreError`, itself a
:class:`spaner.errors.SpanerError`, so the CLI and the API can turn it into a clean message.
A store never half-applies a call that raised: validation happens before anything is written.
"""

from __future__ import annotations

from spaner.errors import DiskFullError, SpanerError

__all__ = [
    "StoreError",
    "SpaceMismatchError",
    "VectorError",
    "DuplicateIdError",
    "UnknownIdError",
    "IndexNotTrainedError",
    "StoreFormatError",
    "StoreFullError",
]


class StoreError(SpanerError):
    """Base class of every error a vector store raises on purpose."""


class SpaceMismatchError(StoreError, ValueError):
    """The store was built for another embedding space (checkpoint hash or dimension).

    Vectors from two different models are not comparable; mixing them silently would give
    meaningless search results, so the store refuses.
    """

    def __init__(self, store_space: object, given_space: object) -> None:
        self.store_space = store_space
        self.given_space = given_space
        super().__init__(
            f"embedding space mismatch: the store holds vectors of {store_space}, "
            f"but the caller uses {given_space}; re-embed into a new store or open the "
            "store with the checkpoint it was built with"
        )


class VectorError(StoreError, ValueError):
    """Vectors are malformed: wrong shape or dimension, NaN/inf, zero or not unit length."""


class DuplicateIdError(StoreError, ValueError):
    """An id is repeated within a batch or already present in the store."""


class UnknownIdError(StoreError, KeyError):
    """An id asked for is not in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IndexNotTrainedError(StoreError, RuntimeError):
    """An ANN index (IVF, PQ) must be trained before it can be searched."""


class StoreFormatError(StoreError, RuntimeError):
    """The on-disk store is missing, of an unknown format version, or corrupt."""


class StoreFullError(StoreError, DiskFullError):
    """The disk (or quota) ran out while writing the store; nothing of the failed call was
    stored, what was stored before is intact, and the next write succeeds once space is free."""
