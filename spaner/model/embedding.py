"""Embedding a set of cached token features with a model: the one helper training, evaluation
and calibration all use (so none of them imports another for it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spaner.encoders.base import ItemTokens, TokenBatch
from spaner.model.network import SpanerModel

__all__ = ["embed_items"]


def embed_items(
    model: SpanerModel, modality: str, items: Sequence[ItemTokens], batch_size: int = 256
) -> torch.Tensor:
    """Embed cached features in eval mode without gradients: ``[N, dim]`` on the CPU (the
    features move to the model's device batch by batch, the vectors come back)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(items), batch_size):
            out.append(model.embed(modality, TokenBatch.collate(items[s : s + batch_size])).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.dim)
