"""The Map tab's data: a 2-D projection of the stored vectors (PCA or t-SNE) with hover labels."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..state import ServiceState

__all__ = ["PROJECTIONS", "embedding_map", "project"]

log = logging.getLogger(__name__)

PROJECTIONS = ("PCA", "t-SNE")
#: points drawn at most (a seeded sample beyond); t-SNE is O(n log n) but slow in Python
MAP_POINTS = {"PCA": 2000, "t-SNE": 1000}
LABEL_CHARS = 60


def project(vecs: np.ndarray, method: str = "PCA", seed: int = 0) -> np.ndarray:
    """``[N, d]`` vectors -> ``[N, 2]``: the two leading principal components, or t-SNE on cosine
    distances (scikit-learn), which draws clusters PCA's two linear axes cannot separate."""
    if method not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, got {method!r}")
    vecs = np.asarray(vecs, dtype=np.float64)
    n = len(vecs)
    if n < 2:
        return np.zeros((n, 2))
    if method == "t-SNE" and n >= 4:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        return TSNE(
            n_components=2,
            perplexity=perplexity,
            metric="cosine",
            init="pca",
            random_state=seed,
            n_jobs=1,
        ).fit_transform(vecs)
    centred = vecs - vecs.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    return xy if xy.shape[1] == 2 else np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))


def _label(meta: dict[str, Any], text: Any) -> str:
    raw = text if isinstance(text, str) else (meta.get("source") or "")
    raw = " ".join(str(raw).split())
    if meta["modality"] != "text":
        raw = raw.rsplit("/", 1)[-1]
    return raw if len(raw) <= LABEL_CHARS else raw[: LABEL_CHARS - 1] + "…"


def embedding_map(state: ServiceState, method: str = "PCA") -> Any:
    """A DataFrame ``x, y, modality, concept, label, id`` of (up to MAP_POINTS) stored items."""
    import pandas as pd

    cols = ("x", "y", "modality", "concept", "label", "id")
    with state.reading() as active:
        ids = [int(i) for i in active.store.meta.ids_matching(None)]  # type: ignore[attr-defined]
        cap = MAP_POINTS.get(method, 2000)
        if len(ids) > cap:
            ids = sorted(np.random.default_rng(0).choice(ids, cap, replace=False).tolist())
        if len(ids) < 2:
            return pd.DataFrame({c: [] for c in cols})
        vecs = active.store.vectors(ids)
        metas = active.store.get(ids)
        labels = [
            _label(m, active.store.content(i) if m["modality"] == "text" else None)
            for i, m in zip(ids, metas, strict=True)
        ]
    xy = project(vecs, method)
    return pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "modality": [m["modality"] for m in metas],
            "concept": [m["concept"] or "(none)" for m in metas],
            "label": labels,
            "id": ids,
        }
    )
