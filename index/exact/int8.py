"""The ``int8`` exact engine: two-stage search over an int8 copy of the matrix.

:class:`Int8Copy` keeps one scale per row (about 1 byte per dimension + 92 bytes per vector,
prepacked in row blocks) for torch's quantized dynamic linear (FBGEMM/oneDNN integer
kernels; the query is quantized to 8 bits per call): it reads a quarter of float32's bytes
and uses the integer dot product units (VNNI, AMX), 3-7x faster than float32 at 10k-100k
rows on the machine measured. Its error bound (:func:`int8_eps`) adds the rows' and the
query's quantization errors (``|q . x - q~ . x~| <= |q - q~| |x~| + |x - x~|``), about
0.025 at 512 dimensions, so it needs the top scores to be a little apart; where they are
not, widening makes it slower and the measurement picks another engine.
:func:`int8_error_within_bound` checks the kernel once per dimension.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from .float32 import topk_inner_product
from .machine import _FLAGS, _bound_check_rows
from .two_stage import CandidateHint, blocked_candidates, single_query, two_stage, with_hint

__all__ = [
    "Int8Copy",
    "int8_eps",
    "int8_available",
    "int8_error_within_bound",
    "topk_int8",
    "INT8_ROW_OVERHEAD",
]

log = logging.getLogger(__name__)
#: dim -> whether the kernel check passed (checked once per process)
_BOUND_OK: dict[int, bool] = {}


def int8_error_within_bound(dim: int, samples: int = 512) -> bool:
    """True when torch's quantized dynamic linear on this machine runs and stays within
    :func:`int8_eps` of float32 on unit vectors of ``dim``: seeded random vectors,
    near-duplicates, and a row with two equal large components scored against itself (which
    overflows a kernel that sums 8-bit products in saturating 16-bit pairs), for one query
    and several. Checked once per dimension."""
    key = dim
    ok = _BOUND_OK.get(key)
    if ok is None:
        x = _bound_check_rows(dim, samples)
        spike = torch.zeros(dim)
        spike[:2] = 1.0
        x[-1] = spike / spike.norm()  # components 1/sqrt(2): 8-bit codes 255 and 127
        q = torch.cat([x[:8], x[-1:]])
        ref = q @ x.T
        ok = False
        if int8_available():
            try:
                copy = Int8Copy(x.numpy(), block_rows=samples // 2)
                worst = -math.inf
                for qq, rr in ((q, ref), (q[:1], ref[:1]), (q[-1:], ref[-1:])):
                    got = torch.cat([copy.scores(qq, lo, hi) for lo, hi, _ in copy.blocks], dim=1)
                    err = float((got - rr).abs().max())
                    worst = max(worst, err - int8_eps(dim, copy.err, _q_range(qq)))
                ok = worst <= 0
                if not ok:
                    log.warning(
                        "int8 kernel error exceeds its bound by %.4g: int8 engine disabled", worst
                    )
            except (RuntimeError, NotImplementedError) as exc:
                log.warning("int8 exact engine disabled: %s", exc)
        _BOUND_OK[key] = ok
    return ok


class Int8Copy:
    """A matrix of unit rows quantized to int8 (one float scale per row, symmetric) and
    prepacked, in blocks of ``block_rows`` rows, for torch's quantized dynamic linear
    (``quantized::linear_dynamic``: FBGEMM/oneDNN integer kernels, VNNI/AMX where the CPU
    has them). ``err`` is the largest L2 distance of a row from its int8 form. About 1 byte
    per dimension + 92 bytes per vector (measured at 512 dimensions). :meth:`extend` packs appended rows, re-packing only
    the last, partial block."""

    __slots__ = ("blocks", "err", "block_rows")

    def __init__(self, matrix: np.ndarray, block_rows: int = 65536) -> None:
        self.blocks: list[tuple[int, int, Any]] = []  # (lo, hi, packed weight)
        self.err = 0.0
        self.block_rows = block_rows
        self.extend(matrix)

    def __len__(self) -> int:
        return self.blocks[-1][1] if self.blocks else 0

    def extend(self, matrix: np.ndarray) -> None:
        """Pack ``matrix[len(self):]``."""
        n = len(matrix)
        start = len(self)
        if self.blocks and self.blocks[-1][1] - self.blocks[-1][0] < self.block_rows:
            start = self.blocks.pop()[0]  # the partial last block is packed again, with the rest
        spans = [(lo, min(n, lo + self.block_rows)) for lo in range(start, n, self.block_rows)]
        threads = min(len(spans), torch.get_num_threads())
        if threads > 1:  # packing is single-threaded and releases the GIL: pack blocks side by side
            with ThreadPoolExecutor(threads, thread_name_prefix="spaner-int8") as pool:
                packed = list(pool.map(lambda span: _pack_int8(matrix, *span), spans))
        else:
            packed = [_pack_int8(matrix, *span) for span in spans]
        for (lo, hi), (block, err) in zip(spans, packed, strict=True):
            self.blocks.append((lo, hi, block))
            self.err = max(self.err, err)

    def scores(self, q: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Approximate ``q @ matrix[lo:hi].T`` for a block's ``lo, hi``."""
        for blo, bhi, packed in self.blocks:
            if blo == lo and bhi == hi:
                return torch.ops.quantized.linear_dynamic(q, packed, _INT8_REDUCE_RANGE)
        raise ValueError(f"rows {lo}:{hi} are not a block")


def _pack_int8(matrix: np.ndarray, lo: int, hi: int) -> tuple[Any, float]:
    """Rows ``lo:hi`` quantized to int8 (symmetric, one scale per row) and prepacked for
    ``quantized::linear_dynamic``, and their largest L2 quantization error."""
    x = torch.from_numpy(matrix[lo:hi])
    scale = (x.abs().amax(dim=1) / 127).clamp_(min=1e-12).double()
    qw = torch.quantize_per_channel(
        x, scale, torch.zeros(hi - lo, dtype=torch.int64), 0, torch.qint8
    )
    err = float((x - qw.dequantize()).norm(dim=1).max())
    return torch.ops.quantized.linear_prepack(qw, None), err


#: quantized::linear_dynamic quantizes queries to 8 bits; CPUs without VNNI/AMX integer dot
#: products sum u8 x s8 pairs in saturating int16, so there it takes 7 bits (reduce_range).
_INT8_REDUCE_RANGE = not any(f in _FLAGS for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


_MIN_Q_SCALE = 6.1e-5
#: Bytes an :class:`Int8Copy` keeps per row beyond its int8 codes (scales, zero points,
#: FBGEMM's column offsets and packing; measured ~92 B at 512 dimensions), for the budget.
INT8_ROW_OVERHEAD = 128


def int8_eps(dim: int, err: float, q_range: float) -> float:
    """Bound on |int8-stage score - float32 score| for unit vectors of ``dim``: rows within
    ``err`` (L2) of their int8 form, queries whose components span ``q_range`` (max(q, 0) -
    min(q, 0) over the batch). The query's 8-bit quantization step is ``q_range / 255``
    (``/ 127`` with reduce_range), so each component moves at most half a step and the query
    at most ``D = step / 2 sqrt(dim)``; by Cauchy-Schwarz the score moves at most
    ``D (1 + err) + err``. Integer products sum exactly; the float32 rescoring and the
    output scaling add ``(dim + 8) 2^-24``. Plus 2% margin."""
    # PyTorch raises a quantization scale below 6.1e-5 to that (SMALL_SCALE_THRESHOLD)
    step = max(q_range / (127 if _INT8_REDUCE_RANGE else 255), _MIN_Q_SCALE)
    d_q = 0.5 * step * math.sqrt(dim)
    return 1.02 * (d_q * (1 + err) + err + (dim + 8) * 2.0**-24)


def int8_available() -> bool:
    """True when this torch build has a quantized CPU engine for the int8 exact engine."""
    return torch.backends.quantized.engine in ("x86", "fbgemm", "onednn", "qnnpack")


def _q_range(q: np.ndarray | torch.Tensor) -> float:
    return max(float(q.max()), 0.0) - min(float(q.min()), 0.0)


def topk_int8(
    matrix: np.ndarray,
    copy: Int8Copy,
    queries: np.ndarray,
    k: int,
    candidates: int | None = None,
    hint: CandidateHint | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (same rows as :func:`topk_inner_product`) via an int8 candidate stage
    over ``copy`` (an :class:`Int8Copy` of ``matrix``): the integer product picks
    ``candidates`` rows (default ``2k + 12``, at least 32) and float32 rescores them,
    widening 4x when they cannot prove the top-k (:func:`int8_eps` bounds the int8 stage's
    error for the batch)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if len(q) == 0:
        return topk_inner_product(matrix, q, k)
    eps = int8_eps(matrix.shape[1], copy.err, _q_range(q))
    cand = candidates or max(32, 2 * k + 12)
    if len(q) == 1:
        run = _int8_single(matrix, copy, q, k, eps)
    else:

        def first(qq: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
            return blocked_candidates(
                lambda lo, hi: copy.scores(qq, lo, hi), len(copy), c, copy.block_rows
            )

        def run(c: int) -> tuple[np.ndarray, np.ndarray, int | None]:
            return two_stage(matrix, q, k, c, eps, first)

    return with_hint(run, len(matrix), k, cand, hint)


def _int8_single(
    matrix: np.ndarray, copy: Int8Copy, q: np.ndarray, k: int, eps: float
) -> Callable[[int], tuple[np.ndarray, np.ndarray, int | None]]:
    """:func:`single_query` over an int8 copy, as a function of the first candidate count:
    the integer product runs once, and widening selects again from the same scores."""
    n = len(matrix)
    qt = torch.from_numpy(q)
    parts = [copy.scores(qt, lo, hi).numpy()[0] for lo, hi, _ in copy.blocks]
    a = parts[0] if len(parts) == 1 else np.concatenate(parts)

    def select(c: int) -> tuple[np.ndarray, float]:
        top = np.argpartition(a, n - c)[n - c :]
        return top, float(a[top].min())

    return lambda cand: single_query(matrix, q, k, cand, eps, select)
