"""Ingest stage 3 (encoder, clip-retrieval's mapper): a batch of decoded inputs of one
modality through the frozen encoder and the SPANER model into unit vectors. When the batch
fails, each input is encoded alone so that one bad input is reported and the rest go on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from spaner.errors import SpanerError

__all__ = ["embed", "encode_batch"]


def embed(sp: Any, modality: str, raws: list[Any]) -> np.ndarray:
    """Unit vectors (float32, ``[len(raws), dim]``) of decoded inputs of ``modality``."""
    enc = sp.encoders[modality]
    batch = enc.forward(enc.preprocess(raws))
    sp.model.eval()
    with torch.no_grad():
        return sp.model.embed(modality, batch).float().cpu().numpy()


def encode_batch(
    sp: Any,
    modality: str,
    raws: list[Any],
    sources: list[str],
    problem: Callable[[str, str], None],
) -> tuple[list[int], np.ndarray]:
    """The positions in ``raws`` that encoded, and their vectors (C-contiguous float32).
    A failing batch is retried input by input; each input that fails alone is reported
    through ``problem(source, text)``. Errors of the model itself (SpanerError) propagate."""
    try:
        vecs = embed(sp, modality, raws)
        keep = list(range(len(raws)))
    except SpanerError:
        raise
    except Exception:  # one bad input broke the batch: isolate it
        keep, rows = [], []
        for i, raw in enumerate(raws):
            try:
                rows.append(embed(sp, modality, [raw]))
                keep.append(i)
            except Exception as exc:  # noqa: BLE001 - reported per file, run goes on
                problem(sources[i], f"encoder failed: {exc}")
        if not keep:
            return [], np.empty((0, 0), np.float32)
        vecs = np.concatenate(rows)
    return keep, np.ascontiguousarray(vecs, dtype=np.float32)
