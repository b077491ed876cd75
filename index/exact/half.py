"""The ``fp16`` and ``bf16`` exact engines: two-stage search over a half-precision mirror.

A half-precision product over a *mirror* of the matrix picks candidates and the float32
vectors rescore them (:mod:`.two_stage`). For unit vectors a half-precision score is within
:func:`mirror_eps` of the float32 one (query and row each round with relative error ``u`` =
2^-11 for fp16, 2^-8 for bf16, the output rounds once more, the float32 accumulation adds at
most ``dim * 2^-24``, and ``sum |q_i x_i| <= |q| |x| = 1``). fp16 (tight bound, few
candidates) wins for single queries, whose matrix-vector product reads half the bytes; bf16
(matrix units: AMX, AVX512-BF16) wins for batches. :func:`mirror_error_within_bound` checks
once per dtype and dimension that the running torch build keeps its error inside the bound
(float32 accumulation); if it does not, that engine is never offered. A mirror costs 2 bytes
per dimension per vector.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from .machine import _bound_check_rows
from .two_stage import CandidateHint, blocked_candidates, two_stage, with_hint

__all__ = [
    "mirror_eps",
    "mirror_error_within_bound",
    "bf16_error_within_bound",
    "topk_two_stage",
]

log = logging.getLogger(__name__)
#: Unit roundoff of the half-precision mirrors.
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
#: (dtype, dim) -> whether the kernel check passed (checked once per process)
_BOUND_OK: dict[tuple[torch.dtype, int], bool] = {}


def mirror_eps(dtype: torch.dtype, dim: int) -> float:
    """Bound on |half-precision score - float32 score| for unit vectors of ``dim``: three
    roundings of relative error ``u`` (query, row, output), the float32 accumulation of
    both the half-precision and the float32 score (``(2 dim + 2) 2^-24``), fp16 subnormals (absolute error 2^-25 per component, summed over
    ``|q_i| + |x_i|``, at most ``2 sqrt(dim)``), plus 2% margin."""
    u = _UNIT_ROUNDOFF[dtype]
    sub = 2.0**-25 * 2 * math.sqrt(dim) if dtype == torch.float16 else 0.0
    # the half score's float32 accumulation and the float32 score's own: (2 dim + 2) 2^-24
    return 1.02 * (3 * u + 3 * u * u + (2 * dim + 2) * 2.0**-24 + sub)


def mirror_error_within_bound(dtype: torch.dtype, dim: int, samples: int = 512) -> bool:
    """True when torch's ``dtype`` matmul on this machine stays within :func:`mirror_eps` of
    float32 on unit vectors of ``dim`` (i.e. accumulates in float32, as the exactness proof
    assumes). Checked once per dtype and dimension on seeded random vectors and on
    near-duplicates (large scores, the worst case for output rounding), for the matrix
    product and the matrix-vector product the engine uses."""
    key = (dtype, dim)
    ok = _BOUND_OK.get(key)
    if ok is None:
        x = _bound_check_rows(dim, samples)
        q = x[:8].clone()
        ref = q @ x.T
        xh, qh = x.to(dtype), q.to(dtype)
        err_mm = float(((qh @ xh.T).float() - ref).abs().max())
        err_mv = max(float((torch.mv(xh, qh[i]).float() - ref[i]).abs().max()) for i in range(8))
        err = max(err_mm, err_mv)
        ok = err <= mirror_eps(dtype, dim)
        if not ok:
            log.warning(
                "%s matmul error %.4g exceeds the bound %.4g: %s exact engine disabled",
                dtype,
                err,
                mirror_eps(dtype, dim),
                dtype,
            )
        _BOUND_OK[key] = ok
    return ok


def bf16_error_within_bound(dim: int, samples: int = 512) -> bool:
    """:func:`mirror_error_within_bound` for bfloat16."""
    return mirror_error_within_bound(torch.bfloat16, dim, samples)


def _block_scores(qh: torch.Tensor, mirror: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    return lambda lo, hi: qh @ mirror[lo:hi].T


def topk_two_stage(
    matrix: np.ndarray,
    mirror: torch.Tensor,
    queries: np.ndarray,
    k: int,
    candidates: int | None = None,
    block_rows: int = 65536,
    hint: CandidateHint | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (same rows as :func:`topk_inner_product`) via a half-precision
    candidate stage over ``mirror`` (``torch.from_numpy(matrix).to(torch.bfloat16 or
    torch.float16)``); rows of both must be unit vectors (the error bound assumes it). See the
    module docstring for why it is exact. ``candidates`` is the first candidate count per
    query (default: ``2k + 12``, at least 32, for bf16; ``k + 8`` for fp16); queries it does
    not prove are searched again with 4x as many."""
    fp16 = mirror.dtype == torch.float16
    cand = candidates or (k + 8 if fp16 else max(32, 2 * k + 12))
    eps = mirror_eps(mirror.dtype, matrix.shape[1])

    def first(q: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        return blocked_candidates(
            _block_scores(q.to(mirror.dtype), mirror), len(mirror), c, block_rows
        )

    return with_hint(
        lambda c: two_stage(matrix, queries, k, c, eps, first), len(matrix), k, cand, hint
    )
