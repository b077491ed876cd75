"""Small hand-made feature sets shared by the evaluation and search tests (importable from any
test folder: pytest puts ``tests/`` on the path for the root conftest)."""

from __future__ import annotations

import torch

from spaner.training.data import FeatureSet, ModalityFeatures

MODS = ("audio", "image", "text")


def labelled_feature_set(labels: dict[str, torch.Tensor]) -> FeatureSet:
    """A feature set with only labels (no tokens): what the metrics and calibration read."""
    return FeatureSet(
        {
            m: ModalityFeatures(
                [None] * len(v), v, [str(i) for i in range(len(v))], [None] * len(v)
            )
            for m, v in labels.items()
        },
        relevance="concept",
    )
