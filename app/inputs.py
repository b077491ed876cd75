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
    "check_modalities",
    "mean_query",
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


def embed_uploads(
    active: ActiveSpace,
    uploads: list[Upload],
    speech: str = "audio",
    transcripts: list[dict] | None = None,
    speech_bias: bool = True,
) -> np.ndarray:
    """Vectors of uploads in input order (batched per modality).

    Audio uploads are spoken queries when ``speech`` is not ``"audio"`` (see
    :mod:`spaner.search.spoken`): what Whisper heard of each is appended to ``transcripts``. With
    ``speech_bias`` their transcripts are biased toward the store's texts and concept names.
    """
    out = np.zeros((len(uploads), active.spaner.model.dim), np.float32)
    by_mod: dict[str, list[int]] = {}
    for i, up in enumerate(uploads):
        by_mod.setdefault(up.kind.modality, []).append(i)
    for modality, idx in by_mod.items():
        if modality == "audio" and speech != "audio" and "text" in active.spaner.encoders:
            from spaner.search.spoken import spoken_queries

            from .vocabulary import store_vocabulary

            spoken = spoken_queries(
                active.spaner,
                [uploads[i].data for i in idx],
                names=[uploads[i].name for i in idx],
                mode=speech,
                vocabulary=store_vocabulary(active.store) if speech_bias else None,
                bias=speech_bias,
            )
            for i, q in zip(idx, spoken, strict=True):
                out[i] = q.vector
                if transcripts is not None:
                    transcripts.append({"file": uploads[i].name, **q.to_dict()})
            continue
        vecs = active.spaner.embed(
            modality, [uploads[i].data for i in idx], names=[uploads[i].name for i in idx]
        )
        out[idx] = vecs
    return out


def check_modalities(active: ActiveSpace, modalities: list[str] | None) -> list[str] | None:
    if not modalities:
        return None
    unknown = [m for m in modalities if m not in active.spaner.encoders]
    if unknown:
        raise Unprocessable(
            f"unknown target modality {', '.join(map(repr, unknown))}; "
            f"this model has: {', '.join(active.spaner.modalities)}"
        )
    return list(dict.fromkeys(modalities))


def mean_query(vectors: np.ndarray) -> np.ndarray:
    """Several examples of one concept -> one unit query vector (their normalised mean)."""
    v = vectors.astype(np.float32).mean(axis=0, keepdims=True)
    norm = float(np.linalg.norm(v))
    if norm < 1e-8:
        raise Unprocessable(
            "the query examples cancel out (their mean is the zero vector); use fewer or other examples"
        )
    return v / norm
