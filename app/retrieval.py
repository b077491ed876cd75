"""The service's side of search: request inputs -> :mod:`spaner.search.engine` -> ``HitOut`` dicts.

The search itself (examples -> one query -> per-modality candidates -> one calibrated ranking)
is the library's, shared with ``spaner search``; this module turns what the REST route, the UI
and the API benchmark hold (texts, stored item ids, uploads, filters) into its arguments, and
its hits into the API's shapes. Runs inside :meth:`ServiceState.reading`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from spaner.index import Filter

from spaner.search import engine
from spaner.search.engine import Example, Query, SearchHit, SearchResult

from .errors import Unprocessable
from .inputs import Upload
from .schemas.common import ItemOut
from .state import ActiveSpace
from .vocabulary import store_vocabulary

__all__ = [
    "examples",
    "build_filter",
    "search_examples",
    "hit_out",
    "item_out",
    "query_vector",
    "search",
]


def item_out(
    active: ActiveSpace, item_id: int, meta: Mapping[str, Any], with_text: bool = True
) -> dict[str, Any]:
    """An :class:`ItemOut`-shaped dict for a stored item."""
    text = None
    if with_text and meta.get("modality") == "text":
        content = active.store.content(item_id)
        text = content if isinstance(content, str) else None
    return ItemOut(
        id=item_id,
        modality=meta["modality"],
        source=meta.get("source"),
        concept=meta.get("concept"),
        content_hash=meta.get("content_hash"),
        extra=dict(meta.get("extra") or {}),
        text=text,
        content_url=f"/v1/items/{item_id}/content",
    ).model_dump()


def hit_out(active: ActiveSpace, hit: SearchHit, with_text: bool = True) -> dict[str, Any]:
    """A ``HitOut``-shaped dict for a search hit."""
    return dict(
        item_out(active, hit.id, hit.metadata, with_text),
        score=hit.score,
        relevance=hit.relevance,
        lexical=hit.lexical,
    )


def examples(
    texts: Sequence[str] = (), item_ids: Sequence[int] = (), uploads: Sequence[Upload] = ()
) -> list[Example]:
    """The library's query examples, in the order texts, stored items, uploads."""
    return [
        *(Example("text", t, name=f"text[{i}]") for i, t in enumerate(texts)),
        *(Example.item(i) for i in item_ids),
        *(Example(u.kind.modality, u.data, name=u.name) for u in uploads),
    ]


def build_filter(
    concept: str | Sequence[str] | None = None, where: Mapping[str, Any] | None = None
) -> Filter | None:
    """The request's filters as a :class:`Filter` (None when empty)."""
    try:
        flt = Filter(concept=concept or None, where=dict(where or {}))
    except ValueError as exc:
        raise Unprocessable(f"filters: {exc}") from None
    return None if flt.is_empty() else flt


def search_examples(
    active: ActiveSpace,
    queries: Sequence[Example],
    k: int,
    modalities: Sequence[str] | None = None,
    filters: Filter | None = None,
    group_by: str | None = None,
    speech: str = "auto",
    speech_bias: bool = True,
    hybrid: bool = True,
) -> SearchResult:
    """The library search over the active store (``speech_bias``: spoken queries' transcripts
    are snapped to the store's vocabulary, built only when a spoken query needs it)."""
    if not queries:
        raise Unprocessable("no query: give at least one text, item_id or uploaded file")
    return engine.search(
        active.spaner,
        active.store,
        queries,
        k,
        modalities=list(modalities) if modalities else None,
        filters=filters,
        group_by=group_by,  # type: ignore[arg-type]
        speech=speech,
        vocabulary=(lambda: store_vocabulary(active.store)) if speech_bias else None,
        hybrid=hybrid,
    )


def query_vector(
    active: ActiveSpace,
    texts: Sequence[str] = (),
    item_ids: Sequence[int] = (),
    uploads: Sequence[Upload] = (),
) -> np.ndarray:
    """One unit query vector ``[1, dim]`` from the examples (the API benchmark's query)."""
    if not (texts or item_ids or uploads):
        raise Unprocessable("no query: give at least one text, item_id or uploaded file")
    return engine.build_query(
        active.spaner, active.store, examples(texts, item_ids, uploads)
    ).vector


def search(
    active: ActiveSpace,
    query: np.ndarray,
    k: int,
    flt: Filter | None = None,
    with_text: bool = True,
) -> list[dict[str, Any]]:
    """Top-``k`` hits for a ``[1, dim]`` query vector by cosine, as ``HitOut``-shaped dicts
    (the API benchmark's search: a vector carries no query modality to calibrate for)."""
    found = engine.search_query(
        active.spaner, active.store, Query(query), k, filters=flt, hybrid=False
    )
    return [hit_out(active, h, with_text) for h in found.results]
