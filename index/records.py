"""Plain records that cross the store boundary: :class:`Item` in, :class:`Hit` out."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

__all__ = ["Item", "Hit", "HitList", "SearchResults", "make_hit", "content_sha256", "coerce_items"]


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
    not pay for it). ``id``, ``score`` and ``metadata`` are read-only (properties over
    slots, so building a hit is a few slot stores: see :func:`make_hit`).
    """

    __slots__ = ("_id", "_score", "_meta", "_row", "_build")

    def __init__(
        self,
        id: int,
        score: float,
        metadata: dict[str, Any] | None = None,
        *,
        row: Any = None,
        build: Any = None,
    ) -> None:
        self._id = id
        self._score = score
        self._meta = metadata
        self._row = row
        self._build = build

    id = property(attrgetter("_id"), doc="The item's id.")
    score = property(attrgetter("_score"), doc="Inner product with the query.")

    @property
    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = self._build(self._row) if self._build else {}
        return self._meta

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.score, self.metadata) == (other.id, other.score, other.metadata)

    __hash__ = None  # type: ignore[assignment]  # metadata is a dict

    def __repr__(self) -> str:
        return f"Hit(id={self.id!r}, score={self.score!r}, metadata={self.metadata!r})"


_new = object.__new__


def make_hit(id: int, score: float, row: Any, build: Any) -> Hit:
    """A :class:`Hit` whose metadata is ``build(row)`` on first access (the fast path that
    search result lists are built with: no argument parsing, five slot stores)."""
    h = _new(Hit)
    h._id = id
    h._score = score
    h._meta = None
    h._row = row
    h._build = build
    return h


class HitList(Sequence[Hit]):
    """The hits of one query, best first: a read-only sequence of :class:`Hit`.

    The store answers with the ids and scores of every query (as fast as the index allows)
    and each list makes its :class:`Hit` objects the first time it is read (``len``,
    indexing, iteration, comparison), taking metadata from the store's in-memory cache. A
    hit whose item was deleted before the list is first read is left out. Read results
    before closing the store: an item missing from the cache is fetched from it then.
    """

    __slots__ = ("_scores", "_ids", "_rows", "_hits")

    def __init__(
        self,
        scores: Sequence[float],
        ids: Sequence[int],
        rows: Callable[[Any, Any], list[Hit]] | None = None,
    ) -> None:
        self._scores = scores
        self._ids = ids
        self._rows = rows  # (ids, scores) -> hits, called once
        self._hits: list[Hit] | None = None if rows is not None else []

    @classmethod
    def of(cls, hits: list[Hit]) -> HitList:
        """A list of hits already made."""
        out = cls((), ())
        out._hits = list(hits)
        return out

    def _materialise(self) -> list[Hit]:
        hits = self._hits
        if hits is None:
            # ids and scores first: the thread that makes the hits clears _rows first
            ids, scores = self._ids, self._scores
            rows = self._rows
            if rows is None:  # another thread made them between the two reads
                return self._hits  # type: ignore[return-value]
            hits = self._hits = rows(ids, scores)
            self._rows = self._scores = self._ids = None  # type: ignore[assignment]
        return hits

    def __len__(self) -> int:
        return len(self._materialise())

    def __getitem__(self, i):  # type: ignore[override]
        return self._materialise()[i]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self._materialise())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (HitList, list, tuple)):
            return self._materialise() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._materialise())

    def __reduce__(self):  # pickles (and copies) its hits, made now, not the store's reader
        return (HitList.of, (self._materialise(),))


class SearchResults(Sequence[HitList]):
    """The hits of a batch of queries: one :class:`HitList` per query, in query order.

    A read-only sequence (``len``, indexing and slicing, iteration, comparison with a list).
    It holds the ``[b, k]`` score and id arrays of the search and makes each query's
    :class:`HitList` the first time that query is read, so a search costs the same whether
    it answered 1 query or 64 until its results are read.
    """

    __slots__ = ("_scores", "_ids", "_rows", "_lists")

    def __init__(
        self,
        scores: Sequence[Sequence[float]],
        ids: Sequence[Sequence[int]],
        rows: Callable[[Any, Any], list[Hit]],
    ) -> None:
        if len(scores) != len(ids):
            raise ValueError(f"{len(scores)} score rows but {len(ids)} id rows")
        self._scores = scores
        self._ids = ids
        self._rows = rows  # (ids, scores) of one query -> its hits
        self._lists: list[HitList | None] = [None] * len(ids)

    def __len__(self) -> int:
        return len(self._lists)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._lists)))]
        hl = self._lists[i]  # raises IndexError (or TypeError) as a list would
        if hl is None:
            j = i % len(self._lists)
            hl = self._lists[i] = HitList(self._scores[j], self._ids[j], self._rows)
        return hl

    def __iter__(self) -> Iterator[HitList]:
        lists = self._lists
        if None in lists:  # make every missing list in one pass
            rows = self._rows
            for j, (hl, srow, irow) in enumerate(zip(lists, self._scores, self._ids, strict=True)):
                if hl is None:
                    lists[j] = HitList(srow, irow, rows)
        return iter(lists)  # type: ignore[arg-type]

    def __reduce__(self):  # pickles (and copies) as the plain list of hit lists it reads as
        return (list, (list(self),))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SearchResults, list)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))
