"""The core model stage: typed configs, the shared prompt and aligners, losses, checkpoints.

``from spaner.model import SpanerModel`` is the network itself (:mod:`spaner.model.network`);
the other modules are imported by name (``spaner.model.config``, ``spaner.model.checkpoint``).
"""

from __future__ import annotations

from spaner.model.network import (
    CrossAttentionLayer,
    LinearAligner,
    ModalityAligner,
    SpanerModel,
    dropout_generator,
    info_nce,
)

__all__ = [
    "SpanerModel",
    "CrossAttentionLayer",
    "ModalityAligner",
    "LinearAligner",
    "dropout_generator",
    "info_nce",
]
