"""Retrieval and coherence metrics for a unified space.

* Recall@K per direction ``q->t``: share of queries with at least one relevant item in
  the top K (relevant = same label: the same concept, or the same manifest line when
  the manifest pairs items).
* mAP@10 with concept-level relevance: ``AP@10 = sum_k P@k * rel_k / min(R, 10)``; P@10, the
  share of relevant items in the top 10.
* Mixed pool (:func:`mixed_pool_metrics`): each query ranks every *other* test item of every
  modality at once, as a search over a whole collection does. Per query modality: P@10 and
  mAP@10 by label, the share of the top 10 from the query's own modality, and the modality-mix
  ratio = (share of the top 10 from other modalities) / (share of other modalities in the pool):
  1.0 when modality plays no part in the ranking, 0 when it decides everything.
* Coherence: modality gap (mean distance between modality centroids of the unit
  vectors), cross-modal neighbour purity (share of an item's 10 nearest items *of other
  modalities* that are relevant), silhouette (cosine) by concept and by modality. A
  merged space has a high concept silhouette and a low modality silhouette.
"""

from __future__ import annotations

from itertools import combinations, permutations

import numpy as np
import torch

from spaner.search.calibration import Calibration
from spaner.training.data import FeatureSet

__all__ = [
    "retrieval_metrics",
    "coherence_metrics",
    "mixed_pool_metrics",
    "calibrated_scores",
    "KS",
]

KS = (1, 5, 10)


def retrieval_metrics(
    embs: dict[str, torch.Tensor], fs: FeatureSet, ks: tuple[int, ...] = KS
) -> dict[str, dict[str, float]]:
    """``{"text->image": {"R@1": .., "R@5": .., "R@10": .., "mAP@10": ..}, ...}``."""
    out: dict[str, dict[str, float]] = {}
    for q, t in permutations(sorted(embs), 2):
        zq, zt = embs[q], embs[t]
        lq, lt = fs.modalities[q].labels, fs.modalities[t].labels
        if len(zq) == 0 or len(zt) == 0:
            continue
        sims = zq @ zt.T
        kmax = min(max(max(ks), 10), zt.shape[0])
        top = sims.topk(kmax, dim=1).indices
        rel = (lt[top] == lq.unsqueeze(1)).float()  # [Nq, kmax]
        has_any = (lq.unsqueeze(1) == lt.unsqueeze(0)).any(1)
        if not has_any.any():
            continue  # no query has a relevant item of this modality in the pool
        # a query whose concept has no item of the target modality cannot be answered: it is
        # left out (Tux Paint: most concepts have a photo and a label but no sound)
        rel = rel[has_any]
        row: dict[str, float] = {}
        for k in ks:
            row[f"R@{k}"] = (
                float(rel[:, :k].amax(1).mean()) if k <= kmax else float(rel.amax(1).mean())
            )
        n_rel = (lq.unsqueeze(1) == lt.unsqueeze(0)).sum(1).float()[has_any]
        k10 = min(10, kmax)
        prec = rel[:, :k10].cumsum(1) / torch.arange(1, k10 + 1).float()
        ap = (prec * rel[:, :k10]).sum(1) / n_rel.clamp(max=k10).clamp_min(1)
        row["mAP@10"] = float(ap.mean())
        row["P@10"] = float(rel[:, :k10].mean())
        row["queries"] = int(has_any.sum())
        out[f"{q}->{t}"] = {k: round(v, 4) for k, v in row.items()}
    return out


def mixed_pool_metrics(
    embs: dict[str, torch.Tensor],
    fs: FeatureSet,
    k: int = 10,
    calibration: Calibration | None = None,
) -> dict[str, dict[str, float]]:
    """Per query modality ``{"P@10", "mAP@10", "own_share", "pool_own_share", "mix_ratio",
    "P@10_directions"}`` over a pool of every other test item of every modality (see the module
    docstring); ``P@10_directions`` is the mean P@10 of that modality's per-direction rankings
    against each other modality alone, the figure the mixed pool is compared with. With a
    ``calibration`` the pool is ranked by each (query modality, target modality) pair's
    calibrated score (:mod:`spaner.search.calibration`) instead of the raw cosine."""
    mods = [m for m in sorted(embs) if len(embs[m])]
    if len(mods) < 2:
        return {}
    z = torch.cat([embs[m] for m in mods])
    labels = torch.cat([fs.modalities[m].labels for m in mods])
    mod_ids = torch.cat([torch.full((len(embs[m]),), i) for i, m in enumerate(mods)])
    n = len(z)
    kk = min(k, n - 1)
    sims = z @ z.T
    if calibration is not None:
        sims = calibrated_scores(sims, mod_ids, mods, calibration)
    sims.fill_diagonal_(-float("inf"))  # never the query itself
    top = sims.topk(kk, dim=1).indices  # [N, kk]
    rel = (labels[top] == labels.unsqueeze(1)).float()
    own = (mod_ids[top] == mod_ids.unsqueeze(1)).float()
    n_rel = (labels.unsqueeze(1) == labels.unsqueeze(0)).sum(1).float() - 1  # minus itself
    prec = rel.cumsum(1) / torch.arange(1, kk + 1).float()
    ap = (prec * rel).sum(1) / n_rel.clamp(max=kk).clamp_min(1)
    per_dir = retrieval_metrics(embs, fs, ks=(1,))
    out: dict[str, dict[str, float]] = {}
    for i, m in enumerate(mods):
        rows = mod_ids == i
        has = rows & (n_rel > 0)
        pool_own = (len(embs[m]) - 1) / (n - 1)
        own_share = float(own[rows].mean())
        other_pool = 1.0 - pool_own
        dirs = [per_dir[f"{m}->{t}"]["P@10"] for t in mods if t != m and f"{m}->{t}" in per_dir]
        out[m] = {
            k_: round(v, 4)
            for k_, v in {
                "P@10": float(rel[rows].mean()),
                "mAP@10": float(ap[has].mean()) if has.any() else 0.0,
                "own_share": own_share,
                "pool_own_share": pool_own,
                "mix_ratio": (1.0 - own_share) / other_pool if other_pool > 0 else 0.0,
                "P@10_directions": float(np.mean(dirs)) if dirs else 0.0,
            }.items()
        }
    return out


def calibrated_scores(
    sims: torch.Tensor, mod_ids: torch.Tensor, mods: list[str], calibration: Calibration
) -> torch.Tensor:
    """Each (query modality, target modality) block of ``sims`` mapped to its calibrated
    ranking key (float64)."""
    out = torch.empty(sims.shape, dtype=torch.float64)
    for i, q in enumerate(mods):
        rows = (mod_ids == i).nonzero().squeeze(1)
        for j, t in enumerate(mods):
            cols = (mod_ids == j).nonzero().squeeze(1)
            block = sims[rows][:, cols].double().numpy()
            out[rows.unsqueeze(1), cols.unsqueeze(0)] = torch.from_numpy(
                calibration.logit(q, t, block)
            )
    return out


def coherence_metrics(
    embs: dict[str, torch.Tensor], fs: FeatureSet, k: int = 10
) -> dict[str, float | None]:
    """Modality gap, cross-modal neighbour purity and silhouettes (see the module docstring)."""
    from sklearn.metrics import silhouette_score

    mods = [m for m in sorted(embs) if len(embs[m])]
    gaps = [float((embs[a].mean(0) - embs[b].mean(0)).norm()) for a, b in combinations(mods, 2)]
    z = torch.cat([embs[m] for m in mods])
    labels = torch.cat([fs.modalities[m].labels for m in mods])
    mod_ids = torch.cat([torch.full((len(embs[m]),), i) for i, m in enumerate(mods)])
    sims = z @ z.T
    sims[mod_ids.unsqueeze(1) == mod_ids.unsqueeze(0)] = -float("inf")  # other modalities only
    kk = min(k, int((mod_ids != mod_ids[0]).sum()) if len(mods) > 1 else 0)
    purity = None
    if kk > 0:
        top = sims.topk(kk, dim=1).indices
        purity = float((labels[top] == labels.unsqueeze(1)).float().mean())
    zn = z.numpy().astype(np.float64)
    sil_concept = sil_mod = None
    n_labels = len(set(labels.tolist()))
    if fs.relevance == "concept" and 1 < n_labels < len(zn):
        sil_concept = float(silhouette_score(zn, labels.numpy(), metric="cosine"))
    if 1 < len(mods) < len(zn):  # silhouette needs 2 <= labels <= items - 1
        sil_mod = float(silhouette_score(zn, mod_ids.numpy(), metric="cosine"))
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    return {
        "modality_gap": r(float(np.mean(gaps))) if gaps else None,
        "neighbour_purity": r(purity),
        "silhouette_concept": r(sil_concept),
        "silhouette_modality": r(sil_mod),
    }
