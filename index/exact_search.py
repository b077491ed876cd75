"""Exact inner-product top-k over a float32 matrix, with an optional row mask or subset.

The float32 matrix (FAISS' flat storage, used zero-copy) can be searched several ways that
all return the exact top-k; which is fastest depends on the batch size, the matrix size, the
CPU and the load, so :class:`ExactSearcher` picks one per batch-size bucket by measurement
(:class:`AdaptiveChoice`) and keeps re-timing the others now and then:

* ``torch``: float32 matmul (oneDNN/MKL sgemm) + ``torch.topk``, the reference kernel;
* ``transposed``: the same float32 product from a transposed copy of the matrix (built
  the first time the engine runs, 4 bytes per dimension per vector, grown in place on
  appends): for one query or a few, streaming rows of the transposed matrix beats the
  dot-product layout by 1.2-1.4x on the machines measured;
* ``split``: torch over row slices on a small thread pool (keeps every core streaming);
* ``single``: one query on the calling thread only (FAISS' SIMD ``fvec_inner_products_ny``):
  never waits at an OpenMP barrier, which on an over-subscribed machine can win;
* ``fp16`` and ``bf16``: two-stage engines over a half-precision *mirror* of the matrix
  (:func:`topk_two_stage`). A half-precision product picks candidates; the float32 vectors
  rescore them. They stay **exact**: for unit vectors a half-precision score is within
  :func:`mirror_eps` of the float32 one (query and row each round with relative error ``u``
  = 2^-11 for fp16, 2^-8 for bf16, the output rounds once more, the float32 accumulation
  adds at most ``dim * 2^-24``, and ``sum |q_i x_i| <= |q| |x| = 1``), so a row outside the
  candidates scores at most ``(last candidate's half score) + eps``. The candidates are
  rescored in float32; when their ``k``-th exact score is above that, no other row can
  enter the top-k. A query whose candidates do not prove it is searched again with 4x the
  candidates, and in float32 once candidates would not save work. fp16 (tight bound, few candidates) wins for single
  queries, whose matrix-vector product reads half the bytes; bf16 (matrix units: AMX,
  AVX512-BF16) wins for batches. :func:`mirror_error_within_bound` checks once per dtype and
  dimension that the running torch build keeps its error inside the bound (float32
  accumulation); if it does not, that engine is never offered. A mirror costs 2 bytes per
  dimension per vector and is built the first time its engine runs; appends extend it.
* ``int8``: the same two-stage search over an int8 copy (:class:`Int8Copy`: one scale per
  row, about 1 byte per dimension + 92 bytes per vector, prepacked in row blocks) through
  torch's quantized dynamic linear (FBGEMM/oneDNN integer kernels; the query is quantized
  to 8 bits per call): it reads a quarter of float32's bytes and uses the integer dot
  product units (VNNI, AMX), 3-7x faster than float32 at 10k-100k rows on the machine
  measured. Its error bound (:func:`int8_eps`) adds the rows' and the query's quantization
  errors (``|q . x - q~ . x~| <= |q - q~| |x~| + |x - x~|``), about 0.025 at 512
  dimensions, so it needs the top scores to be a little apart; where they are not,
  widening makes it slower and the measurement picks another engine.
  :func:`int8_error_within_bound` checks the kernel once per dimension.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss
import numpy as np
import torch

__all__ = [
    "topk_inner_product",
    "topk_two_stage",
    "topk_int8",
    "CandidateHint",
    "Int8Copy",
    "int8_eps",
    "int8_available",
    "int8_error_within_bound",
    "topk_transposed",
    "choose_exact_engine",
    "calibrate",
    "bf16_matmul_is_native",
    "mirror_eps",
    "ExactSearcher",
    "AdaptiveChoice",
    "batch_bucket",
    "topk_split",
    "topk_single_thread",
    "bf16_error_within_bound",
    "mirror_error_within_bound",
    "ENGINES",
]

log = logging.getLogger(__name__)
_NEG_INF = float("-inf")
_ENGINE_BY_DEVICE: dict[str, str] = {"cpu": "torch", "cuda": "faiss"}
#: Unit roundoff of the half-precision mirrors.
_UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
#: Batches up to this size count as "matrix-vector" work: the transposed and fp16 engines
#: are offered; larger batches get the bf16 matrix engine.
SMALL_BATCH = 4
#: Engine names :class:`ExactSearcher` knows (``table`` values that force one).
ENGINES = ("torch", "transposed", "split", "single", "fp16", "bf16", "int8")
_BOUND_OK: dict[tuple[torch.dtype, int], bool] = {}


def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            return frozenset(next((ln for ln in fh if ln.startswith("flags")), "").split())
    except OSError:
        return frozenset()


_FLAGS = _cpu_flags()


def bf16_matmul_is_native() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    return "amx_bf16" in _FLAGS or "avx512_bf16" in _FLAGS


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


def int8_error_within_bound(dim: int, samples: int = 512) -> bool:
    """True when torch's quantized dynamic linear on this machine runs and stays within
    :func:`int8_eps` of float32 on unit vectors of ``dim``: seeded random vectors,
    near-duplicates, and a row with two equal large components scored against itself (which
    overflows a kernel that sums 8-bit products in saturating 16-bit pairs), for one query
    and several. Checked once per dimension."""
    key = (torch.int8, dim)
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


def _bound_check_rows(dim: int, samples: int) -> torch.Tensor:
    """Seeded unit rows for the error-bound checks: random, and near-duplicates of row 0
    (large scores, the worst case for output rounding)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, dim, generator=g)
    x[: samples // 2] = x[0] + 0.01 * x[: samples // 2]
    return x / x.norm(dim=1, keepdim=True)


def bf16_error_within_bound(dim: int, samples: int = 512) -> bool:
    """:func:`mirror_error_within_bound` for bfloat16."""
    return mirror_error_within_bound(torch.bfloat16, dim, samples)


def choose_exact_engine(
    batch: int, device: str = "cpu", table: dict[str, str] | None = None
) -> str:
    """Which exact engine answers a batch of ``batch`` queries on ``device``.

    ``table`` maps ``"<device>"`` or ``"<device>:<batch>"`` to ``"torch"`` or ``"faiss"``
    (as produced by :func:`calibrate`); the measured default is torch on CPU.
    """
    table = table or {}
    chosen = table.get(f"{device}:{batch}") or table.get(device)
    return chosen or _ENGINE_BY_DEVICE.get(device, "torch")


def topk_inner_product(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    mask: np.ndarray | None = None,
    subset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``matrix`` by inner product with each query.

    ``mask`` (bool per row) excludes rows; ``subset`` (row indices) restricts the search to
    those rows and is faster when few rows are allowed. Returns ``(scores, rows)`` of shape
    ``[b, k']`` with ``k' = min(k, candidates)``; excluded rows never appear.
    """
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    if subset is not None:
        if len(subset) == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        rows_t = torch.from_numpy(subset)
        scores = q @ x.index_select(0, rows_t).T
        kk = min(k, len(subset))
        vals, idx = torch.topk(scores, kk, dim=1)
        return vals.numpy(), subset[idx.numpy()]
    scores = q @ x.T
    n_cand = len(matrix)
    if mask is not None:
        scores.masked_fill_(~torch.from_numpy(mask), _NEG_INF)
        n_cand = int(mask.sum())
    kk = min(k, n_cand)
    vals, idx = torch.topk(scores, kk, dim=1)
    return vals.numpy(), idx.numpy().astype(np.int64, copy=False)


def topk_transposed(xt: torch.Tensor, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` from a transposed float32 copy ``xt`` (``[dim, n]``, any row stride):
    the same products as :func:`topk_inner_product`, but the matrix-vector product streams
    along rows of ``xt`` (a sum of scaled rows, no horizontal reductions), which on the CPUs
    measured is 1.2-1.4x faster for one query or a few."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    n = xt.shape[1]
    vals, idx = torch.topk(q @ xt, min(k, n), dim=1)
    return vals.numpy(), idx.numpy().astype(np.int64, copy=False)


def _blocked_candidates(
    scores: Callable[[int, int], torch.Tensor], n: int, cand: int, block_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cand`` rows with the best approximate scores over ``n`` rows, and the lowest of
    those scores (as :func:`_two_stage` wants them), where ``scores(lo, hi)`` returns the
    ``[b, hi - lo]`` scores of rows ``lo:hi``; row blocks keep each score block in cache,
    and their candidates are merged."""
    if n <= block_rows:
        av, ai = torch.topk(scores(0, n), cand, dim=1)
        return av[:, -1].float(), ai
    vals, rows = [], []
    for lo in range(0, n, block_rows):
        hi = min(n, lo + block_rows)
        v, i = torch.topk(scores(lo, hi), min(cand, hi - lo), dim=1)
        vals.append(v)
        rows.append(i + lo)
    v_all, i_all = torch.cat(vals, dim=1), torch.cat(rows, dim=1)
    av, j = torch.topk(v_all, cand, dim=1)
    return av[:, -1].float(), torch.gather(i_all, 1, j)


class CandidateHint:
    """A two-stage engine's first candidate count, learned from its calls: a call that had
    to widen raises it to the count that proved every query (a call that fell back to
    float32 teaches nothing); after ``calm`` calls in a row that did not widen it halves
    (never below the engine's default). A re-run of the candidate stage costs a whole matrix
    pass, a few more candidates only their rescoring."""

    __slots__ = ("value", "calm", "_quiet")

    def __init__(self, calm: int = 256) -> None:
        self.value = 0
        self.calm = calm
        self._quiet = 0

    def update(self, first: int, final: int | None) -> None:
        """``final``: the count that proved the call's last query, None after a float32
        fallback."""
        if final is None:
            return
        if final > first:
            self.value, self._quiet = final, 0
            return
        self._quiet += 1
        if self._quiet >= self.calm:
            self.value, self._quiet = self.value // 2, 0


def _with_hint(
    run: Callable[[int], tuple[np.ndarray, np.ndarray, int | None]],
    n: int,
    k: int,
    cand: int,
    hint: CandidateHint | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``run(first candidate count)`` starting from the larger of ``cand`` and ``hint``'s
    count (below ``n / 2``), teaching ``hint`` the count that proved the call."""
    learned = min(hint.value, (n - 1) // 2) if hint is not None else 0
    first = max(cand, k + 1, learned)
    vals, rows, proved = run(first)
    if hint is not None:
        hint.update(first, proved)
    return vals, rows


def _two_stage(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    cand: int,
    eps: float,
    first: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]],
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Exact top-``k`` from an approximate candidate stage: ``first(q, c)`` returns, for
    float32 queries ``q``, the ``c`` rows with the best approximate scores (``[b, c]``, any
    order) and the lowest approximate score among them (``[b]``), each approximate score
    within ``eps`` of the float32 one. The candidates are rescored in float32; a query is
    done once its ``k``-th exact candidate score beats that lowest approximate score by more
    than ``eps`` (no row outside the candidates can then score above it), and is otherwise
    searched again with 4x the candidates, in float32 once candidates would not save work.
    Also returns the candidate count that proved the last query (None when any query
    fell back to float32)."""
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    n, b = len(matrix), len(q)
    if 2 * cand >= n:  # too few rows for a candidate stage to save work
        return (*topk_inner_product(matrix, queries, k), None)
    if b == 1:  # the common single query: numpy rescoring, cheaper than torch calls here

        def select(c: int) -> tuple[np.ndarray, float]:
            low, ai = first(q, c)
            return ai.numpy()[0], float(low[0])

        return _single_query(matrix, q.numpy(), k, cand, eps, select)
    vals = torch.empty((b, k), dtype=torch.float32)
    rows = torch.empty((b, k), dtype=torch.int64)
    todo = torch.arange(b)
    while len(todo):
        if 2 * cand >= n:  # candidates would not save work: float32 for the rest
            fv, fi = torch.topk(q[todo] @ x.T, min(k, n), dim=1)
            vals[todo], rows[todo] = fv, fi
            return vals.numpy(), rows.numpy(), None
        low, ai = first(q[todo] if len(todo) < b else q, cand)
        exact = torch.einsum("bd,bcd->bc", q[todo], x[ai])
        ev, j = torch.topk(exact, k, dim=1)
        # a row outside the candidates scores at most (lowest candidate score) + eps
        complete = ev[:, k - 1] > low + eps
        done = complete.nonzero().flatten()
        if len(done) == len(todo):
            vals[todo], rows[todo] = ev, torch.gather(ai, 1, j)
            break
        vals[todo[done]] = ev[done]
        rows[todo[done]] = torch.gather(ai[done], 1, j[done])
        todo = todo[~complete]
        cand *= 4
    return vals.numpy(), rows.numpy(), cand


def _single_query(
    matrix: np.ndarray,
    q: np.ndarray,
    k: int,
    cand: int,
    eps: float,
    select: Callable[[int], tuple[np.ndarray, float]],
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """:func:`_two_stage` for one query ``q`` (``[1, dim]``) in numpy: ``select(c)`` returns
    the ``c`` candidate rows and the lowest approximate score among them."""
    n, q0 = len(matrix), q[0]
    while 2 * cand < n:
        rows, low = select(cand)
        ev = np.einsum("ij,j->i", matrix[rows], q0)
        top = np.argsort(-ev, kind="stable")[:k]
        if ev[top[-1]] > low + eps:
            return ev[top][None], rows[top].astype(np.int64, copy=False)[None], cand
        cand *= 4
    return (*topk_inner_product(matrix, q, k), None)


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
        return _blocked_candidates(
            _block_scores(q.to(mirror.dtype), mirror), len(mirror), c, block_rows
        )

    return _with_hint(
        lambda c: _two_stage(matrix, queries, k, c, eps, first), len(matrix), k, cand, hint
    )


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
            return _blocked_candidates(
                lambda lo, hi: copy.scores(qq, lo, hi), len(copy), c, copy.block_rows
            )

        def run(c: int) -> tuple[np.ndarray, np.ndarray, int | None]:
            return _two_stage(matrix, q, k, c, eps, first)

    return _with_hint(run, len(matrix), k, cand, hint)


def _int8_single(
    matrix: np.ndarray, copy: Int8Copy, q: np.ndarray, k: int, eps: float
) -> Callable[[int], tuple[np.ndarray, np.ndarray, int | None]]:
    """:func:`_single_query` over an int8 copy, as a function of the first candidate count:
    the integer product runs once, and widening selects again from the same scores."""
    n = len(matrix)
    qt = torch.from_numpy(q)
    parts = [copy.scores(qt, lo, hi).numpy()[0] for lo, hi, _ in copy.blocks]
    a = parts[0] if len(parts) == 1 else np.concatenate(parts)

    def select(c: int) -> tuple[np.ndarray, float]:
        top = np.argpartition(a, n - c)[n - c :]
        return top, float(a[top].min())

    return lambda cand: _single_query(matrix, q, k, cand, eps, select)


def topk_single_thread(
    matrix: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` for one query on the calling thread only: FAISS' SIMD inner products
    (``fvec_inner_products_ny``, no OpenMP) + ``argpartition``. Slower than a multi-threaded
    matvec on an idle machine, but it never waits at a thread barrier, which on a machine
    with more runnable threads than cores is what dominates a small multi-threaded matvec."""
    if len(queries) != 1 or not matrix.flags.c_contiguous or matrix.dtype != np.float32:
        return topk_inner_product(matrix, queries, k)
    q = np.ascontiguousarray(queries[0], dtype=np.float32)
    n, d = matrix.shape
    scores = np.empty(n, np.float32)
    faiss.fvec_inner_products_ny(
        faiss.swig_ptr(scores), faiss.swig_ptr(q), faiss.swig_ptr(matrix), d, n
    )
    kk = min(k, n)
    top = np.argpartition(scores, n - kk)[n - kk :] if kk < n else np.arange(n)
    top = top[np.argsort(-scores[top], kind="stable")]
    return scores[top][None], top.astype(np.int64)[None]


def topk_split(
    matrix: np.ndarray, queries: np.ndarray, k: int, pool: ThreadPoolExecutor, parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` with the rows split in ``parts`` slices searched on ``pool`` threads
    and merged (torch releases the GIL). One query is a memory-bound matvec that torch runs
    on fewer cores than the machine has; slicing the rows keeps every core streaming."""
    x = torch.from_numpy(matrix)
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    n = len(matrix)
    bounds = [(n * i) // parts for i in range(parts + 1)]

    def part(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = bounds[i], bounds[i + 1]
        v, idx = torch.topk(q @ x[lo:hi].T, min(k, hi - lo), dim=1)
        return v, idx + lo

    got = list(pool.map(part, range(parts)))
    vals = torch.cat([g[0] for g in got], dim=1)
    rows = torch.cat([g[1] for g in got], dim=1)
    kk = min(k, vals.shape[1])
    v, j = torch.topk(vals, kk, dim=1)
    return v.numpy(), torch.gather(rows, 1, j).numpy().astype(np.int64, copy=False)


def calibrate(
    matrix: np.ndarray,
    faiss_search: Callable[[np.ndarray, int], object],
    batches: tuple[int, ...] = (1, 16, 64),
    repeats: int = 3,
) -> dict[str, str]:
    """Time torch and FAISS exact search on ``matrix`` per batch size; return the faster map."""
    rng = np.random.default_rng(0)
    table: dict[str, str] = {}
    for b in batches:
        q = matrix[rng.integers(0, len(matrix), b)]
        times = {}
        for name, fn in (
            ("torch", lambda q: topk_inner_product(matrix, q, 10)),
            ("faiss", lambda q: faiss_search(q, 10)),
        ):
            fn(q)
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(q)
            times[name] = time.perf_counter() - t0
        table[f"cpu:{b}"] = min(times, key=times.__getitem__)
    return table


class _KeyState:
    """What :class:`AdaptiveChoice` knows about one key."""

    __slots__ = ("names", "times", "medians", "warm", "calls", "next", "explored", "best")

    def __init__(self, names: tuple[str, ...], window: int, explore_every: int) -> None:
        self.names = names
        self.times: dict[str, deque[float]] = {n: deque(maxlen=window) for n in names}
        self.medians: dict[str, float] = dict.fromkeys(names, math.inf)
        self.warm: set[str] = set()
        self.calls = 0
        self.next = explore_every  # call number of the next exploration
        self.explored = 0
        self.best: str | None = None  # set once every option has its samples


class AdaptiveChoice:
    """Pick, per key (a batch-size bucket), the fastest of a few interchangeable ways of doing
    the same call, by measurement, and keep measuring.

    The first calls of a key take the options in turn, each once untimed (a first call may
    build what the option keeps) and then until each has ``min_samples`` timings
    (real calls, so the timings include what a call pays on this machine between other work,
    such as waking idle OpenMP threads); afterwards the option with the best recent time per query
    (median of its last ``window`` timings) runs, and about every ``explore_every``-th call
    another option runs instead (round robin; an option r times slower than the best only
    every ``r * explore_every`` calls), so the choice follows load changes on a shared
    machine. Options must return the same results: only their speed differs.

    :meth:`run` takes thunks, :meth:`run_made` a function that makes only the option it
    runs; both are :meth:`pick`, the call, and :meth:`record`.
    """

    def __init__(self, window: int = 5, explore_every: int = 32, min_samples: int = 2) -> None:
        self.window = window
        self.explore_every = explore_every
        self.min_samples = min_samples
        self._state: dict[int, _KeyState] = {}

    @property
    def choices(self) -> dict[int, str]:
        """Key -> the option currently preferred there."""
        return {key: min(st.medians, key=st.medians.__getitem__) for key, st in self._state.items()}

    def timings(self, key: int) -> dict[str, list[float]]:
        """Recent seconds-per-query timings of each option for ``key``."""
        st = self._state.get(key)
        return {n: list(t) for n, t in st.times.items()} if st else {}

    def clear(self) -> None:
        self._state.clear()

    def pick(self, key: int, names: tuple[str, ...]) -> tuple[str, bool]:
        """The option to run for ``key`` now, and whether to time it (then pass the time to
        :meth:`record`)."""
        st = self._state.get(key)
        if st is None or st.names != names:
            st = self._state[key] = _KeyState(names, self.window, self.explore_every)
        st.calls += 1
        best = st.best
        if best is not None:
            if not self.explore_every or st.calls < st.next or len(names) < 2:
                return best, True  # the steady state: nothing else to decide
            others = [e for e in names if e != best]
            name = others[st.explored % len(others)]
            st.explored += 1
            # an option r times slower is re-timed r times less often (at most 16x less):
            # exploring then costs under 1/explore_every of the best option's time
            ratio = st.medians[name] / max(st.medians[best], 1e-12)
            st.next = st.calls + int(self.explore_every * min(max(ratio, 1.0), 16.0))
            return name, True
        fewest = min(names, key=lambda e: (e in st.warm, len(st.times[e])))
        if fewest not in st.warm:
            # an option's first call is not timed: it may build what it keeps (a copy of the
            # matrix, a thread pool), which later calls do not pay
            st.warm.add(fewest)
            return fewest, False
        # still sampling: one option per call, in turn, timed in real calls (a loop of
        # back-to-back runs would hide what a call pays to wake idle OpenMP threads)
        st.next = st.calls + self.explore_every
        return fewest, True

    def record(self, key: int, name: str, seconds_per_query: float) -> None:
        st = self._state[key]
        t = st.times[name]
        t.append(seconds_per_query)
        srt = sorted(t)  # the median of at most ``window`` values, without statistics' overhead
        m = len(srt) // 2
        st.medians[name] = srt[m] if len(srt) % 2 else (srt[m - 1] + srt[m]) / 2
        if st.best is not None or all(len(v) >= self.min_samples for v in st.times.values()):
            st.best = min(st.medians, key=st.medians.__getitem__)

    def run(self, key: int, runs: dict[str, Callable[[], Any]], per: int = 1) -> Any:
        """Run one of ``runs`` (name -> thunk) for ``key``; ``per`` = queries in the call."""
        return self.run_made(key, tuple(runs), runs.__getitem__, per)

    def run_made(
        self, key: int, names: tuple[str, ...], make: Callable[[str], Callable[[], Any]], per: int
    ) -> Any:
        """Run the option of ``names`` that :meth:`pick` chooses, as ``make(name)()``."""
        name, timed = self.pick(key, names)
        run = make(name)
        if not timed or per <= 0:
            return run()
        t0 = time.perf_counter()
        out = run()
        self.record(key, name, (time.perf_counter() - t0) / per)
        return out


class ExactSearcher:
    """Exact top-k over one (changing) matrix, choosing the engine by measurement.

    The engines are described in the module docstring; results are the same whichever
    answers. Offered per call: ``torch`` always; ``split`` on more than one thread; for
    batches up to :data:`SMALL_BATCH` queries ``transposed`` (while its copy fits in
    ``copy_budget`` bytes), ``single`` (one query) and ``fp16``;
    for larger batches ``bf16`` on CPUs with native bf16 (a half-precision engine only when
    :func:`mirror_error_within_bound` holds for the dimension); ``int8`` at every batch size
    while its copy fits and :func:`int8_error_within_bound` holds. The choice, per batch-size
    bucket (powers of two), is an :class:`AdaptiveChoice`; its timings are dropped when the
    matrix size changes by more than 2x. ``table`` (``{"cpu": "torch"}``,
    ``{"cpu:16": "bf16"}``) forces a choice.
    """

    def __init__(
        self,
        table: dict[str, str] | None = None,
        explore_every: int = 64,
        copy_budget: int = 1 << 30,
    ) -> None:
        self.table = table if table is not None else {}
        #: largest copy of the matrix (bytes) an engine may keep: the transposed float32
        #: copy, and each of the fp16, bf16 and int8 copies
        self.copy_budget = copy_budget
        self._xt: torch.Tensor | None = None  # [dim, capacity] buffer of the transposed copy
        self._xt_n = 0  # columns of it filled
        self._xt_view: torch.Tensor | None = None  # self._xt[:, :_xt_n]
        # 3 timings per engine before choosing: the median then resists one outlier (a
        # call that met a busy moment), which with 2 timings kept a fast engine out for
        # hundreds of calls
        self.chooser = AdaptiveChoice(explore_every=explore_every, min_samples=3)
        self._calibrated_n = 0
        self._mirrors: dict[torch.dtype, torch.Tensor] = {}
        self._int8: Int8Copy | None = None
        self._hints: dict[tuple[str, int], CandidateHint] = {}  # two-stage engine, bucket
        self._cands: dict[tuple[int, int, int, int], tuple[str, ...]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.threads = max(1, torch.get_num_threads())

    @property
    def choices(self) -> dict[int, str]:
        """Bucket -> the engine currently preferred there (by recent timings)."""
        return self.chooser.choices

    @property
    def _bf16(self) -> torch.Tensor | None:  # the bf16 mirror, if built
        return self._mirrors.get(torch.bfloat16)

    def reset(self, appended: bool = False) -> None:
        """The matrix changed. ``appended``: only rows were added at the end, so the copies
        (transposed, half-precision, int8) stay valid for the rows they have and are extended
        on their next use; otherwise they are dropped (rebuilt when their engine next runs),
        with the learned candidate counts."""
        if not appended:
            self._mirrors.clear()
            self._int8 = None
            self._hints.clear()
            self._xt, self._xt_n, self._xt_view = None, 0, None

    def close(self) -> None:
        self._mirrors.clear()
        self._int8 = None
        self._xt, self._xt_n, self._xt_view = None, 0, None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _mirror(self, matrix: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        m = self._mirrors.get(dtype)
        n = len(matrix)
        if m is None or len(m) > n:
            m = torch.from_numpy(matrix).to(dtype)
        elif len(m) < n:  # rows were appended: convert only those
            m = torch.cat([m, torch.from_numpy(matrix[len(m) :]).to(dtype)])
        self._mirrors[dtype] = m
        return m

    def _int8_copy(self, matrix: np.ndarray) -> Int8Copy:
        c = self._int8
        if c is None or len(c) > len(matrix):
            c = self._int8 = Int8Copy(matrix)
        elif len(c) < len(matrix):  # rows were appended: quantize only those
            c.extend(matrix)
        return c

    def _transposed(self, matrix: np.ndarray) -> torch.Tensor:
        """``matrix.T`` as a ``[dim, n]`` view of a buffer with spare columns, so appended
        rows are copied in without re-copying the rest (capacity grows 1.5x)."""
        n, d = matrix.shape
        view = self._xt_view
        if view is not None and self._xt_n == n and view.shape[0] == d:
            return view  # the common case: nothing changed since the last call
        self._xt_view = None
        if self._xt is None or self._xt_n > n or self._xt.shape[0] != d:
            self._xt, self._xt_n = None, 0
        if self._xt is None or self._xt.shape[1] < n:
            cap = max(n, int(1.5 * (self._xt.shape[1] if self._xt is not None else 0)))
            buf = torch.empty((d, cap), dtype=torch.float32)
            if self._xt is not None:
                buf[:, : self._xt_n] = self._xt[:, : self._xt_n]
            self._xt = buf
        if self._xt_n < n:
            self._xt[:, self._xt_n : n] = torch.from_numpy(matrix[self._xt_n :]).T
            self._xt_n = n
        self._xt_view = self._xt[:, :n]
        return self._xt_view

    def _runner(self, engine: str, matrix: np.ndarray, queries: np.ndarray, k: int):
        if engine in ("bf16", "fp16"):  # the mirror is made when the engine runs
            dtype = torch.bfloat16 if engine == "bf16" else torch.float16
            hint = self._hints.setdefault((engine, batch_bucket(len(queries))), CandidateHint())
            return lambda: topk_two_stage(
                matrix, self._mirror(matrix, dtype), queries, k, hint=hint
            )
        if engine == "int8":
            hint = self._hints.setdefault((engine, batch_bucket(len(queries))), CandidateHint())
            return lambda: topk_int8(matrix, self._int8_copy(matrix), queries, k, hint=hint)
        if engine == "split":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="spaner-exact")
            pool = self._pool
            return lambda: topk_split(matrix, queries, k, pool, self.threads)
        if engine == "single":
            return lambda: topk_single_thread(matrix, queries, k)
        if engine == "transposed":
            return lambda: topk_transposed(self._transposed(matrix), queries, k)
        return lambda: topk_inner_product(matrix, queries, k)

    def candidates(self, batch: int, n: int, k: int, dim: int | None = None) -> list[str]:
        """Engines worth timing for this call (one means no choice to make). A
        half-precision engine is offered only when ``dim`` (if given) passes
        :func:`mirror_error_within_bound`; ``bf16`` only on CPUs with native bf16."""
        forced = self.table.get(f"cpu:{batch}") or self.table.get("cpu")
        if forced in ENGINES:
            return [forced]
        if n <= 2 * max(64, 4 * k) * self.threads:
            return ["torch"]
        out = ["torch"]
        half_fits = n * (dim or 0) * 2 <= self.copy_budget  # each copy within the budget
        if self.threads > 1:
            out.append("split")
        if batch <= SMALL_BATCH:
            if n * (dim or 0) * 4 <= self.copy_budget:
                out.append("transposed")
            if batch == 1:
                out.append("single")
            if half_fits and (dim is None or mirror_error_within_bound(torch.float16, dim)):
                out.append("fp16")

        elif (
            half_fits
            and bf16_matmul_is_native()
            and (dim is None or mirror_error_within_bound(torch.bfloat16, dim))
        ):
            out.append("bf16")
        if n * ((dim or 0) + INT8_ROW_OVERHEAD) <= self.copy_budget and (
            int8_error_within_bound(dim) if dim else int8_available()
        ):
            out.append("int8")
        return out

    def search(
        self, matrix: np.ndarray, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        n, b = len(matrix), len(queries)
        if b == 0:
            kk = min(k, n)
            return np.empty((0, kk), np.float32), np.empty((0, kk), np.int64)
        ckey = (b, n, k, matrix.shape[1])
        cands = self._cands.get(ckey) if not self.table else None  # a table may change
        if cands is None:
            if len(self._cands) > 256:
                self._cands.clear()
            cands = self._cands[ckey] = tuple(self.candidates(b, n, k, matrix.shape[1]))
        if len(cands) == 1:
            return self._runner(cands[0], matrix, queries, k)()
        if not self._calibrated_n // 2 <= n <= 2 * self._calibrated_n:
            self.chooser.clear()
            self._calibrated_n = n
        # a copy, once made, stays until the matrix changes (it is re-timed now and then,
        # and rebuilding it for that would cost more than the search)
        return self.chooser.run_made(
            batch_bucket(b), cands, lambda name: self._runner(name, matrix, queries, k), b
        )


def batch_bucket(batch: int) -> int:
    return min(1 << (batch - 1).bit_length(), 1024)
