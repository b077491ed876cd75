"""The training objective: how a batch of embeddings of several modalities is scored.

* ``pairs``: the mean symmetric multi-positive InfoNCE over every pair of modalities
  (:func:`spaner.model.info_nce`); each modality is only ever ranked against one other, so
  nothing keeps the modalities from sitting apart (a search over all of them then ranks by
  modality first).
* ``mixed``: one multi-positive InfoNCE over *all* items of the batch regardless of modality
  (:func:`mixed_info_nce`): each item ranks every other item; positives are the items with the
  same label (concept or manifest line) in any modality, its own modality included. With
  ``balance`` each modality's positives get the same share of the target, so a modality with
  many items in the batch (augmented audio) does not drown the others.
* ``both``: the mean of the two.

``gap_weight`` adds ``gap_weight * modality_gap_penalty``: the mean squared distance between
the modality centroids of the batch. ``mix_weight`` adds ``mix_weight *
own_modality_preference``: how much closer, on average, an item sits to its positives of its
own modality than to its positives of other modalities (squared, counted only when positive).
A text query whose same-concept texts all sit closer than the concept's images ranks texts
first even when every positive outranks every negative; this term asks for the opposite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
import torch.nn.functional as F

from spaner.model.network import info_nce

__all__ = [
    "LOSSES",
    "mixed_info_nce",
    "modality_gap_penalty",
    "own_modality_preference",
    "objective",
]

LOSSES = ("pairs", "mixed", "both")


def mixed_info_nce(
    z: torch.Tensor,
    labels: torch.Tensor,
    mod_ids: torch.Tensor,
    logit_scale: torch.Tensor,
    balance: bool = True,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-positive InfoNCE of every item against every other item of the batch.

    ``z`` ``[N, d]`` unit vectors of all modalities, ``labels``/``mod_ids`` ``[N]``. ``rows``
    (bool ``[N]``) limits the anchors (the others stay candidates). Anchors without a positive
    are ignored.
    """
    n = z.shape[0]
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (scale * z @ z.T).masked_fill(eye, -float("inf"))
    pos = (labels.unsqueeze(1) == labels.unsqueeze(0)) & ~eye
    target = pos.to(z.dtype)
    if balance:
        # each modality's positives of an anchor share one equal part of the target
        same_mod = (mod_ids.unsqueeze(1) == mod_ids.unsqueeze(0)).to(z.dtype)  # [N, N]
        per_mod = target @ same_mod  # [i, j]: positives of i in j's modality
        target = torch.where(pos, 1.0 / per_mod.clamp_min(1.0), torch.zeros_like(target))
    keep = pos.any(1)
    if rows is not None:
        keep = keep & rows
    if not keep.any():
        return logits.new_zeros(()) + 0.0 * z.sum()
    target = target[keep] / target[keep].sum(1, keepdim=True)
    logp = F.log_softmax(logits[keep], dim=1).masked_fill(eye[keep], 0.0)
    return -(target * logp).sum(1).mean()


def modality_gap_penalty(embs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared distance between the centroids of each pair of modalities."""
    mods = [m for m in sorted(embs) if len(embs[m])]
    terms = [(embs[a].mean(0) - embs[b].mean(0)).pow(2).sum() for a, b in combinations(mods, 2)]
    if not terms:
        return next(iter(embs.values())).new_zeros(())
    return torch.stack(terms).mean()


def own_modality_preference(
    z: torch.Tensor, labels: torch.Tensor, mod_ids: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over anchors of ``relu(mean sim to own-modality positives - mean sim to
    other-modality positives)^2`` (anchors with positives of both kinds)."""
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sims = z @ z.T
    pos = (labels.unsqueeze(1) == labels.unsqueeze(0)) & ~eye
    same = mod_ids.unsqueeze(1) == mod_ids.unsqueeze(0)
    own, other = (pos & same).to(z.dtype), (pos & ~same).to(z.dtype)
    n_own, n_other = own.sum(1), other.sum(1)
    keep = (n_own > 0) & (n_other > 0)
    if rows is not None:
        keep = keep & rows
    if not keep.any():
        return 0.0 * z.sum()
    d = (sims * own).sum(1) / n_own.clamp_min(1) - (sims * other).sum(1) / n_other.clamp_min(1)
    return F.relu(d[keep]).pow(2).mean()


def objective(
    embs: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    logit_scale: torch.Tensor,
    pairs: Sequence[tuple[str, str]],
    loss: str = "mixed",
    gap_weight: float = 0.0,
    balance: bool = True,
    only: Sequence[str] | None = None,
    mix_weight: float = 0.0,
) -> torch.Tensor:
    """The training loss of one batch (see the module docstring). ``pairs`` are the modality
    pairs the ``pairs`` loss covers; with ``only``, the ``mixed`` loss anchors on those
    modalities' items alone."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    parts = []
    mods = sorted(embs)
    z = torch.cat([embs[m] for m in mods])
    lab = torch.cat([labels[m] for m in mods])
    ids = torch.cat([torch.full((len(embs[m]),), i, device=z.device) for i, m in enumerate(mods)])
    rows = None
    if only is not None:
        rows = torch.cat([torch.full((len(embs[m]),), m in only, device=z.device) for m in mods])
    if loss in ("pairs", "both") and pairs:
        parts.append(
            torch.stack(
                [info_nce(embs[a], embs[b], labels[a], labels[b], logit_scale) for a, b in pairs]
            ).mean()
        )
    if loss in ("mixed", "both"):
        parts.append(mixed_info_nce(z, lab, ids, logit_scale, balance, rows))
    total = torch.stack(parts).mean()
    if gap_weight > 0:
        total = total + gap_weight * modality_gap_penalty(embs)
    if mix_weight > 0:
        total = total + mix_weight * own_modality_preference(z, lab, ids, rows)
    return total
