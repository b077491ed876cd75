"""Plain records that cross the store boundary: :class:`Item` in, :class:`Hit` out."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Item", "Hit", "content_sha256", "coerce_items"]


def content_sha256(content: bytes | str) -> str:
    """sha256 hex digest of raw bytes, or of a text's UTF-8 encoding."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return hashlib.sha256(data).hexdigest()


@dataclass
class Item:
    """Metadata (and optionally the original content) of one vector being added.

    ``content`` is kept by the store so the item can be served back and re-embedded:
    text goes into SQLite, bytes into a content-addressed file. ``content_hash`` is computed
    from ``content`` when given (a mismatching explicit hash is refused); pass it alone when
    the content lives elsewhere and only de-duplication is wanted.
    """

    modality: str
    source: str | None = None
    concept: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    content: bytes | str | None = None
    content_hash: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.modality, str) or not self.modality:
            raise ValueError(f"Item.modality must be a non-empty string, got {self.modality!r}")
        if self.content is not None:
            if not isinstance(self.content, (bytes, bytearray, memoryview, str)):
                raise ValueError("Item.content must be bytes or str")
            digest = content_sha256(self.content)
            if self.content_hash is not None and self.content_hash != digest:
                raise ValueError("Item.content_hash does not match sha256(content)")
            self.content_hash = digest
        if not isinstance(self.extra, Mapping):
            raise ValueError("Item.extra must be a mapping of JSON values")


def coerce_items(metadata: Any, n: int) -> list[Item]:
    """Turn ``None`` / a list of :class:`Item` or dicts into ``n`` items (modality required)."""
    if metadata is None:
        raise ValueError("metadata is required: one Item (or dict with 'modality') per vector")
    items = list(metadata)
    if len(items) != n:
        raise ValueError(f"got {n} vectors but {len(items)} metadata records")
    out = []
    for m in items:
        if isinstance(m, Item):
            out.append(m)
        elif isinstance(m, Mapping):
            out.append(Item(**m))
        else:
            raise ValueError(f"metadata records must be Item or dict, got {type(m).__name__}")
    return out


class Hit:
    """One search result: the item's id, its inner-product score and its metadata.

    ``metadata`` holds ``modality``, ``source``, ``concept``, ``content_hash`` and ``extra``
    (a fresh dict per hit, built on first access: searches that only read ids and scores do
    not pay for it). Hits are immutable.
    """

    __slots__ = ("id", "score", "_meta", "_row", "_build")

    def __init__(
        self,
        id: int,
        score: float,
        metadata: dict[str, Any] | None = None,
        *,
        row: Any = None,
        build: Any = None,
    ) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "_meta", metadata)
        object.__setattr__(self, "_row", row)
        object.__setattr__(self, "_build", build)

    @property
    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            object.__setattr__(self, "_meta", self._build(self._row) if self._build else {})
        return self._meta

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Hit is immutable (cannot set {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.score, self.metadata) == (other.id, other.score, other.metadata)

    __hash__ = None  # type: ignore[assignment]  # metadata is a dict

    def __repr__(self) -> str:
        return f"Hit(id={self.id!r}, score={self.score!r}, metadata={self.metadata!r})"
