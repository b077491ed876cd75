"""The search pipeline shared by the REST route, the UI and the benchmark.

Query examples (texts, stored item ids, uploads) -> vectors -> one mean query -> store search
-> hits with metadata. Runs inside :meth:`ServiceState.reading`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from spaner.index import Filter, Hit

from .errors import Unprocessable
from .inputs import Upload, check_modalities, embed_texts, embed_uploads, mean_query
from .schemas.common import ItemOut
from .state import ActiveSpace

__all__ = ["query_vector", "search", "search_by_modality", "item_out"]


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


def query_vector(
    active: ActiveSpace,
    texts: Sequence[str] = (),
    item_ids: Sequence[int] = (),
    uploads: Sequence[Upload] = (),
    speech: str = "audio",
    transcripts: list[dict] | None = None,
) -> np.ndarray:
    """One unit query vector ``[1, dim]`` from every example given (``speech``: how audio
    uploads are used, see :mod:`spaner.spoken`; their transcripts go to ``transcripts``)."""
    parts = []
    if texts:
        parts.append(embed_texts(active, list(texts)))
    if item_ids:
        parts.append(active.store.vectors([int(i) for i in item_ids]))
    if uploads:
        parts.append(embed_uploads(active, list(uploads), speech, transcripts))
    if not parts:
        raise Unprocessable("no query: give at least one text, item_id or uploaded file")
    return mean_query(np.concatenate(parts))


def build_filter(
    active: ActiveSpace,
    modalities: Sequence[str] | None,
    concept: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
) -> Filter | None:
    mods = check_modalities(active, list(modalities) if modalities else None)
    try:
        flt = Filter(modality=mods, concept=concept or None, where=dict(where or {}))
    except ValueError as exc:
        raise Unprocessable(f"filters: {exc}") from None
    return None if flt.is_empty() else flt


def search(
    active: ActiveSpace,
    query: np.ndarray,
    k: int,
    flt: Filter | None = None,
    with_text: bool = True,
) -> list[dict[str, Any]]:
    """Top-``k`` hits for a ``[1, dim]`` query, as ``HitOut``-shaped dicts."""
    if active.store.count() == 0:
        return []
    hits: list[Hit] = active.store.search(query, k=k, filters=flt)[0]
    return [dict(item_out(active, h.id, h.metadata, with_text), score=float(h.score)) for h in hits]


def search_by_modality(
    active: ActiveSpace,
    query: np.ndarray,
    k: int,
    modalities: Sequence[str] | None = None,
    concept: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    with_text: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """The top-``k`` of each target modality (default: every modality of the model), as its own
    list of ``HitOut``-shaped dicts."""
    targets = check_modalities(active, list(modalities) if modalities else None)
    out: dict[str, list[dict[str, Any]]] = {}
    for m in targets or active.spaner.modalities:
        out[m] = search(active, query, k, build_filter(active, [m], concept, where), with_text)
    return out
