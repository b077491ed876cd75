"""Validation of vectors and ids before anything is written.

Policy (documented in FORMAT.md): vectors must be finite, of the store's dimension and of
unit L2 norm within ``UNIT_TOLERANCE``; those within tolerance are re-normalised exactly
(those within ``UNIT_EXACT`` of 1 already are, and are kept as they are).
Anything else is refused with :class:`VectorError` (a caller passing un-normalised vectors has
a bug upstream; silently normalising would hide it). Stores created with
``normalize=True`` instead normalise any non-zero finite vector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import faiss
import numpy as np

from .errors import DuplicateIdError, VectorError

__all__ = ["UNIT_TOLERANCE", "check_vectors", "check_ids"]

UNIT_TOLERANCE = 1e-3
#: Norms within this of 1 are unit to float32 precision: such vectors are kept as they are
#: (dividing by the norm would only change last bits, at the cost of a copy).
UNIT_EXACT = 1e-6
# the same bounds on squared norms (what the fast path computes)
_EXACT_SQ = ((1.0 - UNIT_EXACT) ** 2, (1.0 + UNIT_EXACT) ** 2)
_TOL_SQ = ((1.0 - UNIT_TOLERANCE) ** 2, (1.0 + UNIT_TOLERANCE) ** 2)


def check_vectors(vectors: object, dim: int, *, normalize: bool = False) -> np.ndarray:
    """Return a C-contiguous float32 ``[n, dim]`` array of unit vectors, or raise VectorError."""
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise VectorError(f"vectors are not a numeric array: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise VectorError(f"vectors must be 2-D [n, {dim}], got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise VectorError(f"vectors have dimension {arr.shape[1]}, the store expects {dim}")
    arr = np.ascontiguousarray(arr)
    sq = np.empty(len(arr), np.float32)  # squared norms, in one C pass
    if len(arr):
        faiss.fvec_norms_L2sqr(faiss.swig_ptr(sq), faiss.swig_ptr(arr), dim, len(arr))
        # the common cases first, in a few reductions
        if len(sq) <= 256:  # a query batch: Python's min/max/sum over a list beat numpy
            listed = sq.tolist()
            # min/max can miss a NaN (every comparison with it is false); the sum cannot
            lo, hi, total = min(listed), max(listed), sum(listed)
        else:  # an add: numpy's reductions propagate NaN
            lo, hi = float(sq.min()), float(sq.max())
            total = hi
        if total < math.inf:
            if lo >= _EXACT_SQ[0] and hi <= _EXACT_SQ[1]:
                return arr
            if lo > 0.0 and (normalize or (lo >= _TOL_SQ[0] and hi <= _TOL_SQ[1])):
                return arr / np.sqrt(sq)[:, None]
    norms = np.sqrt(sq)
    if not np.isfinite(norms).all():  # NaN/inf anywhere in a row makes its norm non-finite
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))[:5].tolist()
        if bad:
            raise VectorError(f"vectors contain NaN or inf (rows {bad})")
        norms = np.linalg.norm(arr.astype(np.float64), axis=1).astype(np.float32)  # overflow
    if (norms == 0).any():
        raise VectorError(
            f"zero vectors cannot be normalised (rows {np.flatnonzero(norms == 0)[:5].tolist()})"
        )
    if not normalize:
        off = np.abs(norms - 1.0) > UNIT_TOLERANCE
        if off.any():
            rows = np.flatnonzero(off)[:5].tolist()
            raise VectorError(
                f"vectors must be L2-normalised (|norm-1| <= {UNIT_TOLERANCE}); rows {rows} have "
                f"norms {norms[rows].round(4).tolist()}; normalise them or create the store "
                "with normalize=True"
            )
    return np.ascontiguousarray(arr / norms[:, None], dtype=np.float32)


def check_ids(ids: Iterable[int] | None, n: int) -> np.ndarray | None:
    """Return ids as int64 (or None to let the store assign), refusing negatives and repeats."""
    if ids is None:
        return None
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if arr.ndim != 1 or len(arr) != n:
        raise VectorError(f"got {n} vectors but ids of shape {arr.shape}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise VectorError(f"ids must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise VectorError("ids must be non-negative int64")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise DuplicateIdError(f"ids repeated within the batch: {uniq[counts > 1][:5].tolist()}")
    return arr
