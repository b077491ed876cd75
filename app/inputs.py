"""Turning request inputs (texts, uploaded files, stored item ids) into unit vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Unprocessable, UnsupportedMedia
from .state import ActiveSpace
from .uploads import UPLOAD_TYPES, Sniffed, sniff

__all__ = [
    "Upload",
    "classify_upload",
    "embed_texts",
    "embed_uploads",
]


@dataclass(frozen=True)
class Upload:
    """An uploaded file's bytes, its client-side name (for messages only) and sniffed type."""

    data: bytes
    name: str
    kind: Sniffed


def classify_upload(active: ActiveSpace, data: bytes, name: str | None) -> Upload:
    """Sniff an upload; 415 when it is no image/audio type or the model lacks that modality."""
    label = name or "upload"
    if not data:
        raise Unprocessable(f"{label}: empty file (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise UnsupportedMedia(
            f"{label}: not a recognised file type; upload {UPLOAD_TYPES}. Send text as JSON "
            f'{{"text": ...}} instead of a file.'
        )
    if kind.modality not in active.spaner.encoders:
        raise UnsupportedMedia(
            f"{label}: {kind.mime} is {kind.modality}, but the active model has no {kind.modality} "
            f"encoder (it has: {', '.join(active.spaner.modalities)})"
        )
    return Upload(data, label, kind)


def embed_texts(active: ActiveSpace, texts: list[str]) -> np.ndarray:
    if "text" not in active.spaner.encoders:
        raise Unprocessable("the active model has no text encoder; query with a file instead")
    return active.spaner.embed("text", texts, names=[f"text[{i}]" for i in range(len(texts))])


def embed_uploads(active: ActiveSpace, uploads: list[Upload]) -> np.ndarray:
    """Vectors of uploads in input order (batched per modality), as items to store or embed
    (spoken queries are the search's: :mod:`spaner.search.engine`)."""
    out = np.zeros((len(uploads), active.spaner.model.dim), np.float32)
    by_mod: dict[str, list[int]] = {}
    for i, up in enumerate(uploads):
        by_mod.setdefault(up.kind.modality, []).append(i)
    for modality, idx in by_mod.items():
        out[idx] = active.spaner.embed(
            modality, [uploads[i].data for i in idx], names=[uploads[i].name for i in idx]
        )
    return out
