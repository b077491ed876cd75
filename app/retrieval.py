"""The search pipeline shared by the REST route, the UI and the benchmark.

Query examples (texts, stored item ids, uploads) -> vectors -> one mean query -> store search
-> hits with metadata. Runs inside :meth:`ServiceState.reading`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from spaner.index import Filter, Hit

from spaner.search.mixed import merge_by_relevance, query_weights, relevance_of

from .errors import Unprocessable
from .inputs import Upload, check_modalities, embed_texts, embed_uploads, mean_query
from .schemas.common import ItemOut
from .state import ActiveSpace

__all__ = [
    "query_vector",
    "query_modalities",
    "search",
    "search_mixed",
    "search_by_modality",
    "item_out",
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


def query_vector(
    active: ActiveSpace,
    texts: Sequence[str] = (),
    item_ids: Sequence[int] = (),
    uploads: Sequence[Upload] = (),
    speech: str = "audio",
    transcripts: list[dict] | None = None,
    speech_bias: bool = True,
) -> np.ndarray:
    """One unit query vector ``[1, dim]`` from every example given (``speech``: how audio
    uploads are used, see :mod:`spaner.search.spoken`; their transcripts go to ``transcripts``;
    ``speech_bias``: transcripts biased toward the store's vocabulary)."""
    parts = []
    if texts:
        parts.append(embed_texts(active, list(texts)))
    if item_ids:
        parts.append(active.store.vectors([int(i) for i in item_ids]))
    if uploads:
        parts.append(embed_uploads(active, list(uploads), speech, transcripts, speech_bias))
    if not parts:
        raise Unprocessable("no query: give at least one text, item_id or uploaded file")
    return mean_query(np.concatenate(parts))


def query_modalities(
    active: ActiveSpace,
    texts: Sequence[str] = (),
    item_ids: Sequence[int] = (),
    uploads: Sequence[Upload] = (),
    transcripts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, float]:
    """``{modality: share}`` of the query's examples, for the score calibration. A spoken query
    counts as text when only its transcript was used, half text and half audio for both."""
    shares: dict[str, float] = {}

    def add(modality: str, weight: float = 1.0) -> None:
        shares[modality] = shares.get(modality, 0.0) + weight

    for _ in texts:
        add("text")
    if item_ids:
        for meta in active.store.get([int(i) for i in item_ids]):
            add(meta["modality"])
    # transcripts come one per audio upload, in upload order, when speech was not "audio"
    n_audio = sum(u.kind.modality == "audio" for u in uploads)
    used = [t.get("used") for t in transcripts] if len(transcripts) == n_audio else []
    for u in uploads:
        if u.kind.modality != "audio":
            add(u.kind.modality)
            continue
        how = used.pop(0) if used else "audio"
        if how == "transcript":
            add("text")
        elif how == "both":
            add("text", 0.5)
            add("audio", 0.5)
        else:
            add("audio")
    return query_weights(shares) if shares else {}


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


def search_mixed(
    active: ActiveSpace,
    query: np.ndarray,
    k: int,
    query_mods: Mapping[str, float],
    modalities: Sequence[str] | None = None,
    concept: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    with_text: bool = True,
) -> list[dict[str, Any]]:
    """The top-``k`` over every target modality in one ranking. With the model's score
    calibration (:mod:`spaner.search.calibration`), ranked by ``relevance``: each target modality's
    top ``k`` is fetched, calibrated for the query's modalities and merged. Without one (an older
    checkpoint, an untrained model), by raw cosine as the store ranks, ``relevance`` None."""
    cal = active.spaner.calibration
    targets = check_modalities(active, list(modalities) if modalities else None)
    if cal is None or not query_mods:
        hits = search(active, query, k, build_filter(active, targets, concept, where), with_text)
        return [dict(h, relevance=None) for h in hits]
    if active.store.count() == 0:
        return []
    per_target: dict[str, list[Hit]] = {}
    for m in targets or active.spaner.modalities:
        flt = build_filter(active, [m], concept, where)
        per_target[m] = list(active.store.search(query, k=k, filters=flt)[0])
    return [
        dict(item_out(active, h.id, h.metadata, with_text), score=float(h.score), relevance=rel)
        for h, rel in merge_by_relevance(per_target, cal, query_mods, k)
    ]


def search_by_modality(
    active: ActiveSpace,
    query: np.ndarray,
    k: int,
    modalities: Sequence[str] | None = None,
    concept: str | Sequence[str] | None = None,
    where: Mapping[str, Any] | None = None,
    with_text: bool = True,
    query_mods: Mapping[str, float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The top-``k`` of each target modality (default: every modality of the model), as its own
    list of ``HitOut``-shaped dicts, by raw cosine (``relevance`` beside it when the model has
    a calibration and ``query_mods`` is given)."""
    targets = check_modalities(active, list(modalities) if modalities else None)
    cal = active.spaner.calibration
    out: dict[str, list[dict[str, Any]]] = {}
    for m in targets or active.spaner.modalities:
        hits = search(active, query, k, build_filter(active, [m], concept, where), with_text)
        rel = relevance_of(cal, query_mods, m, [h["score"] for h in hits])
        out[m] = [dict(h, relevance=r) for h, r in zip(hits, rel, strict=True)]
    return out
