"""The embedding space a store belongs to, and the versioned ``store.json`` manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic_io import atomic_write_json
from .errors import SpaceMismatchError, StoreFormatError

__all__ = ["EmbeddingSpace", "StoreManifest", "FORMAT_VERSION", "MANIFEST_NAME"]

FORMAT_VERSION = 1
MANIFEST_NAME = "store.json"


@dataclass(frozen=True)
class EmbeddingSpace:
    """Identifies the model that produced the vectors: its checkpoint hash and output dim."""

    checkpoint_hash: str
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim <= 0:
            raise ValueError(f"EmbeddingSpace.dim must be a positive int, got {self.dim!r}")
        if not self.checkpoint_hash:
            raise ValueError("EmbeddingSpace.checkpoint_hash must be a non-empty string")

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint_hash": self.checkpoint_hash, "dim": self.dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddingSpace:
        return cls(checkpoint_hash=str(d["checkpoint_hash"]), dim=int(d["dim"]))

    def check(self, other: EmbeddingSpace | None) -> None:
        """Raise :class:`SpaceMismatchError` unless ``other`` is None or equal to ``self``."""
        if other is None:
            return
        if not isinstance(other, EmbeddingSpace):
            raise TypeError(f"space must be an EmbeddingSpace, got {type(other).__name__}")
        if other != self:
            raise SpaceMismatchError(self.to_dict(), other.to_dict())


@dataclass
class StoreManifest:
    """Contents of ``<store>/store.json``; written once at creation, atomically."""

    backend: str
    space: EmbeddingSpace
    metric: str = "inner_product"
    backend_config: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "backend": self.backend,
            "dim": self.space.dim,
            "metric": self.metric,
            "space": self.space.to_dict(),
            "backend_config": self.backend_config,
        }

    def write(self, store_dir: Path) -> None:
        atomic_write_json(store_dir / MANIFEST_NAME, self.to_dict())

    @classmethod
    def read(cls, store_dir: Path) -> StoreManifest:
        path = store_dir / MANIFEST_NAME
        if not path.is_file():
            raise StoreFormatError(f"{store_dir}: not a vector store (no {MANIFEST_NAME})")
        try:
            d = json.loads(path.read_text())
            version = int(d["format_version"])
            if version != FORMAT_VERSION:
                raise StoreFormatError(
                    f"{path}: format version {version} is not supported by this SPANER "
                    f"(it reads version {FORMAT_VERSION})"
                )
            return cls(
                backend=str(d["backend"]),
                space=EmbeddingSpace.from_dict(d["space"]),
                metric=str(d.get("metric", "inner_product")),
                backend_config=dict(d.get("backend_config", {})),
                format_version=version,
            )
        except StoreFormatError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreFormatError(f"{path}: corrupt manifest ({exc})") from exc
