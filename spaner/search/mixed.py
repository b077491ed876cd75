"""One ranking over several target modalities, by calibrated score (:mod:`spaner.search.calibration`).

A store ranks by raw cosine, which in a search over every modality ranks by modality first.
With a calibration, a mixed search fetches the top ``k`` of each target modality from the index,
maps each hit's cosine to its (query modality, target modality) pair's calibrated relevance,
and merges: the best ``k`` by relevance. Within one target modality the order is the index's
(the map is increasing). Shared by ``POST /v1/search``, the UI and ``spaner search``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["query_weights"]


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
