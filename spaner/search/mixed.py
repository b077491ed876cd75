"""One ranking over several target modalities, by calibrated score (:mod:`spaner.search.calibration`).

A store ranks by raw cosine, which in a search over every modality ranks by modality first.
With a calibration, a mixed search fetches the top ``k`` of each target modality from the index,
maps each hit's cosine to its (query modality, target modality) pair's calibrated relevance,
and merges: the best ``k`` by relevance. Within one target modality the order is the index's
(the map is increasing). Shared by ``POST /v1/search``, the UI and ``spaner search``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from spaner.search.calibration import Calibration

__all__ = ["query_weights", "merge_by_relevance", "relevance_of"]


def query_weights(modalities: Iterable[str] | Mapping[str, float]) -> dict[str, float]:
    """``{modality: share}`` of a query's examples (a query averaged from several examples is
    calibrated by the examples' modalities, weighted by how many there are of each): from the
    examples' modalities, or from ``{modality: count}``."""
    counts: dict[str, float] = {}
    if isinstance(modalities, Mapping):
        counts = {m: float(w) for m, w in modalities.items() if w > 0}
    else:
        for m in modalities:
            counts[m] = counts.get(m, 0.0) + 1.0
    total = sum(counts.values())
    return {m: c / total for m, c in counts.items()} if total else {}


def merge_by_relevance(
    per_target: Mapping[str, Sequence[Any]],
    calibration: Calibration,
    query: str | Mapping[str, float],
    k: int,
) -> list[tuple[Any, float]]:
    """``(hit, relevance)`` of the best ``k`` hits of every target modality's list (each hit
    has a ``score``, the raw cosine), ranked by calibrated logit, best first (ties: the target
    modality's order in ``per_target``, then the index's order)."""
    scored: list[tuple[float, int, int, Any, float]] = []
    for ti, (t, hits) in enumerate(per_target.items()):
        if not hits:
            continue
        cos = np.array([float(h.score) for h in hits], dtype=np.float64)
        logits = calibration.logit(query, t, cos)
        rel = calibration.relevance(query, t, cos)
        for j, h in enumerate(hits):
            scored.append((-float(logits[j]), ti, j, h, float(rel[j])))
    scored.sort(key=lambda r: r[:3])
    return [(h, rel) for _, _, _, h, rel in scored[:k]]


def relevance_of(
    calibration: Calibration | None,
    query: str | Mapping[str, float] | None,
    target: str,
    scores: Sequence[float],
) -> list[float | None]:
    """Calibrated relevance of raw cosines ``scores`` of ``target`` items (None each when there
    is no calibration or no query modality)."""
    if calibration is None or not query or not len(scores):
        return [None] * len(scores)
    rel = calibration.relevance(query, target, np.asarray(scores, dtype=np.float64))
    return [float(r) for r in rel]
