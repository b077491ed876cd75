"""The ``device`` exact engine: exact top-k on a torch device (CUDA; the CPU runs the same
code, which is how the tests check it).

A half-precision mirror of the float32 matrix stays on the device (built on the first search,
extended on appends) and picks candidates with one matmul + top-k per block of rows; the
float32 vectors rescore the candidates (in float64, so no TF32 or reduced-precision mode can
touch them) and the proof of :mod:`.two_stage` makes the result exact: a half-precision
score is within ``eps`` (:func:`~.half.mirror_eps`, scaled by the query's and the largest
row's norms when they exceed 1) of the float32 one, so once a query's ``k``-th exact score
beats the lowest candidate's approximate score by more than ``eps``, no row outside the
candidates can reach the top-k; other queries are searched again with 4x the candidates, and
exactly (every row rescored) once candidates would not save work.

**Tie rule**: rows are ordered by exact score, then by row number (the lower row first), so
the result is one well-defined list whatever the device, the block sizes or the candidate
counts. The proof is strict, so every row tied with the ``k``-th score is among the
candidates when the rule is applied. The float32 reference (:func:`.float32.topk_inner_product`)
leaves the order of tied rows to ``torch.topk``.

Work is split into blocks of rows (and of queries) that fit a memory budget: a quarter of the
free device memory (at most 8 GiB) on CUDA, 256 MiB elsewhere. The float32 matrix is copied
to the device too when it fits in half the free memory; otherwise candidates are gathered
from the host's float32 matrix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .choice import batch_bucket
from .half import mirror_eps
from .machine import _bound_check_rows
from .two_stage import CandidateHint, blocked_candidates, with_hint

__all__ = ["DeviceExactSearcher", "device_kernel_ok", "order_keys", "resolve_search_device"]

log = logging.getLogger(__name__)

#: environment variable that overrides a store's ``search_device`` on this machine
SEARCH_DEVICE_ENV = "SPANER_SEARCH_DEVICE"
_CPU_BUDGET = 256 << 20
_CUDA_BUDGET_MAX = 8 << 30
_UPLOAD_ROWS = 65536  # rows converted per step when a copy is built or extended
_LOW32 = (1 << 32) - 1
#: (device, dtype, dim) -> whether the device's matmul keeps within the mirror's bound
_KERNEL_OK: dict[tuple[str, torch.dtype, int], bool] = {}
_FLAGS = threading.RLock()  # the cuBLAS flags are process-wide


def resolve_search_device(
    requested: str | None, *, faiss_gpu: bool, use_gpu: bool | None = None
) -> str | None:
    """The torch device exact (Flat) searches run on, or None for the CPU engines.

    ``requested`` (a store's ``search_device``; the environment variable
    ``SPANER_SEARCH_DEVICE`` overrides it): ``"cpu"`` keeps the CPU engines, ``"cuda"`` or
    ``"cuda:N"`` asks for this engine (the CPU engines, with a warning, when torch sees no
    CUDA device). None: FAISS' GPU build when it sees a GPU (``faiss_gpu``), else CUDA through
    this engine when torch sees a device, unless ``use_gpu`` is False."""
    requested = os.environ.get(SEARCH_DEVICE_ENV) or requested
    if requested is None:
        if faiss_gpu or use_gpu is False or not torch.cuda.is_available():
            return None
        return "cuda"
    dev = torch.device(requested)
    if dev.type == "cpu":
        return None
    if dev.type == "cuda" and not torch.cuda.is_available():
        log.warning("search_device %r: torch sees no CUDA device; searching on the CPU", requested)
        return None
    return str(dev)


@contextlib.contextmanager
def _fp32_accumulation(device: torch.device) -> Iterator[None]:
    """cuBLAS may reduce fp16/bf16 products in reduced precision unless told not to; the
    error bound assumes float32 accumulation, so that is switched off while the engine runs."""
    if device.type != "cuda":
        yield
        return
    m = torch.backends.cuda.matmul
    with _FLAGS:
        prev = (m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction)
        m.allow_fp16_reduced_precision_reduction = False
        m.allow_bf16_reduced_precision_reduction = False
        try:
            yield
        finally:
            m.allow_fp16_reduced_precision_reduction = prev[0]
            m.allow_bf16_reduced_precision_reduction = prev[1]


def _eps(dtype: torch.dtype, dim: int) -> float:
    # a float32 "mirror" may run in TF32 (or bf16) where a user enabled it: bound it as bf16
    return mirror_eps(torch.bfloat16 if dtype == torch.float32 else dtype, dim)


def device_kernel_ok(device: torch.device | str, dtype: torch.dtype, dim: int) -> bool:
    """True when ``dtype`` matmuls on ``device`` stay within the engine's error bound on
    seeded unit vectors of ``dim`` (random and near-duplicate rows; matrix and single-query
    products), checked once per device, dtype and dimension."""
    device = torch.device(device)
    key = (str(device), dtype, dim)
    ok = _KERNEL_OK.get(key)
    if ok is None:
        x = _bound_check_rows(dim, 512)
        ref = x[:8].double() @ x.double().T
        xd = x.to(device=device, dtype=dtype)
        with _fp32_accumulation(device):
            got = torch.cat([xd[:8] @ xd.T, *(xd[i : i + 1] @ xd.T for i in range(8))])
        err = float((got.double().cpu() - torch.cat([ref, ref])).abs().max())
        ok = _KERNEL_OK[key] = err <= _eps(dtype, dim)
        if not ok:
            log.warning(
                "%s %s matmul error %.3g exceeds %.3g", device, dtype, err, _eps(dtype, dim)
            )
    return ok


def order_keys(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """int64 keys whose descending order is (score descending, row ascending): the float32
    score's bits made order-preserving in the high 32 bits, the complement of the row (below
    2^32) in the low ones. -0.0 counts as +0.0."""
    bits = (scores.float() + 0.0).view(torch.int32)
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(torch.int64)
    return ordered * (1 << 32) + (_LOW32 - rows)


def _top_by_key(
    scores: torch.Tensor, rows: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best (score, row) pairs of each line under the tie rule, in order."""
    _, j = torch.topk(order_keys(scores, rows), k, dim=1)
    return scores.gather(1, j), rows.gather(1, j)


def _take(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``t[rows]`` through ``index_select`` (torch's advanced indexing costs milliseconds on
    the CPU)."""
    return t.index_select(0, rows.reshape(-1)).reshape(*rows.shape, *t.shape[1:])


class _Rows:
    """A device copy (in ``dtype``) of a float32 matrix's first rows, with spare capacity so
    appended rows are converted without copying the rest again (grows 1.5x)."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self.buf: torch.Tensor | None = None
        self.n = 0

    def sync(self, matrix: np.ndarray) -> torch.Tensor:
        n, d = matrix.shape
        if self.buf is not None and (self.n > n or self.buf.shape[1] != d):
            self.buf, self.n = None, 0
        if self.buf is None or self.buf.shape[0] < n:
            cap = max(n, int(1.5 * (self.buf.shape[0] if self.buf is not None else 0)))
            buf = torch.empty((cap, d), dtype=self.dtype, device=self.device)
            if self.buf is not None:
                buf[: self.n] = self.buf[: self.n]
            self.buf = buf
        for lo in range(self.n, n, _UPLOAD_ROWS):
            hi = min(n, lo + _UPLOAD_ROWS)
            self.buf[lo:hi] = torch.from_numpy(matrix[lo:hi]).to(self.device).to(self.dtype)
        self.n = n
        return self.buf[:n]


class DeviceExactSearcher:
    """Exact top-k over one (changing) float32 matrix on a torch ``device`` (see the module
    docstring). ``dtype``: the mirror's (default float16; float32 when the device's half
    matmul breaks the bound). ``memory_budget`` (bytes of working memory per block),
    ``block_rows`` and ``query_block`` override the sizes derived from the budget (the tests
    force tiny blocks). ``float32_copy``: keep the float32 matrix on the device (None: when
    it fits; on the CPU the matrix itself is used)."""

    def __init__(
        self,
        device: str | torch.device = "cuda",
        dtype: torch.dtype = torch.float16,
        memory_budget: int | None = None,
        block_rows: int | None = None,
        query_block: int | None = None,
        float32_copy: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.block_rows = block_rows
        self.query_block = query_block
        self.float32_copy = float32_copy
        self._lock = threading.RLock()
        self._mirror: _Rows | None = None
        self._x32: _Rows | None = None
        self._norm_rows = 0  # rows whose norms are in _xmax
        self._xmax = 0.0  # largest row norm
        self._hints: dict[int, CandidateHint] = {}

    def reset(self, appended: bool = False) -> None:
        """The matrix changed; ``appended``: only rows were added at the end, so the device
        copies are extended on the next search instead of rebuilt."""
        if not appended:
            with self._lock:
                self._mirror = self._x32 = None
                self._norm_rows, self._xmax = 0, 0.0
                self._hints.clear()

    close = reset

    def _budget(self) -> int:
        if self.memory_budget:
            return self.memory_budget
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return max(64 << 20, min(free // 4, _CUDA_BUDGET_MAX))
        return _CPU_BUDGET

    def mirror_dtype(self, dim: int) -> torch.dtype:
        """The mirror's dtype for ``dim``: :attr:`dtype` where :func:`device_kernel_ok`."""
        if self.dtype != torch.float32 and not device_kernel_ok(self.device, self.dtype, dim):
            return torch.float32
        return self.dtype

    def _copies(self, matrix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mirror, float32 matrix on the device or None), brought up to date."""
        n, d = matrix.shape
        dtype = self.mirror_dtype(d)
        host = self.device.type == "cpu"
        x32 = torch.from_numpy(matrix) if host and self.float32_copy is not False else None
        if host and dtype == torch.float32 and x32 is not None:
            mirror = x32
        else:
            if self._mirror is None or self._mirror.dtype != dtype:
                self._mirror = _Rows(self.device, dtype)
            mirror = self._mirror.sync(matrix)
        if not host and self.float32_copy is not False:
            if self._x32 is None and (self.float32_copy or self._fits(n * d * 4)):
                self._x32 = _Rows(self.device, torch.float32)
            if self._x32 is not None:
                x32 = self._x32.sync(matrix)
        for lo in range(self._norm_rows, n, _UPLOAD_ROWS):
            block = matrix[lo : min(n, lo + _UPLOAD_ROWS)]
            self._xmax = max(self._xmax, float(np.sqrt(np.einsum("ij,ij->i", block, block).max())))
        self._norm_rows = n
        return mirror, x32

    def _fits(self, nbytes: int) -> bool:
        free, _ = torch.cuda.mem_get_info(self.device)
        return nbytes <= free // 2

    def search(
        self,
        matrix: np.ndarray,
        queries: np.ndarray,
        k: int,
        *,
        mask: np.ndarray | None = None,
        subset: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` rows of ``matrix`` (float32, C-contiguous) by inner product with
        each query, as :func:`.float32.topk_inner_product` (``mask``: bool per row, False
        excludes; ``subset``: the only rows searched), ordered by the tie rule. Returns
        ``(scores, rows)`` of shape ``[b, min(k, allowed rows)]``."""
        n, dim = matrix.shape
        q_np = np.ascontiguousarray(queries, dtype=np.float32)
        if q_np.ndim != 2 or q_np.shape[1] != dim:
            raise ValueError(f"queries of shape {q_np.shape} for a matrix of dimension {dim}")
        if k <= 0:
            raise ValueError("k must be positive")
        if mask is not None and len(mask) != n:
            raise ValueError(f"a mask of {len(mask)} rows for a matrix of {n}")
        if mask is not None and subset is not None:
            raise ValueError("give a mask or a subset, not both")
        sub = np.unique(np.asarray(subset, dtype=np.int64)) if subset is not None else None
        allowed = len(sub) if sub is not None else int(mask.sum()) if mask is not None else n
        kk = min(k, allowed)
        if len(q_np) == 0 or kk == 0:
            return np.empty((len(q_np), kk), np.float32), np.empty((len(q_np), kk), np.int64)
        with self._lock, _fp32_accumulation(self.device), torch.inference_mode():
            return self._search(matrix, q_np, kk, mask, sub)

    def _search(
        self,
        matrix: np.ndarray,
        q_np: np.ndarray,
        kk: int,
        mask: np.ndarray | None,
        sub: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        mirror, x32 = self._copies(matrix)
        dev, dim = self.device, matrix.shape[1]
        dtype = mirror.dtype
        sub_t = torch.from_numpy(sub).to(dev) if sub is not None else None
        keep = (
            torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).to(dev)
            if mask is not None
            else None
        )
        m = len(sub) if sub is not None else len(matrix)
        budget = self._budget()

        def rows32(rows: torch.Tensor) -> torch.Tensor:  # float32 rows (global numbers)
            if x32 is not None:
                return _take(x32, rows)
            return torch.from_numpy(matrix[rows.cpu().numpy()]).to(dev)

        def glob(local: torch.Tensor) -> torch.Tensor:  # local row number -> matrix row
            return _take(sub_t, local) if sub_t is not None else local

        def approx(qh: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
            def scores(lo: int, hi: int) -> torch.Tensor:
                x = mirror[lo:hi] if sub_t is None else mirror.index_select(0, sub_t[lo:hi])
                s = qh @ x.T
                if keep is not None:
                    s.masked_fill_(~keep[lo:hi], float("-inf"))
                return s

            return scores

        def exact(q: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
            """float32 scores (rounded from float64) of ``local`` rows: [t, c] per query,
            or [c] rows shared by every query; -inf for masked rows."""
            rows = glob(local)
            if local.dim() == 1:
                s = (q.double() @ rows32(rows).double().T).float()
            else:
                s = torch.einsum("td,tcd->tc", q.double(), rows32(rows).double()).float()
            if keep is not None:
                s = s.masked_fill(~_take(keep, rows), float("-inf"))
            return s

        def exact_all(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            step = self.block_rows or max(1, budget // (dim * 12 + len(q) * 24))
            vals, rows = [], []
            for lo in range(0, m, step):
                local = torch.arange(lo, min(m, lo + step), device=dev)
                s = exact(q, local)
                v, r = _top_by_key(s, glob(local).expand(len(q), -1), min(kk, len(local)))
                vals.append(v)
                rows.append(r)
            return _top_by_key(torch.cat(vals, 1), torch.cat(rows, 1), kk)

        def rescore(q: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
            step = max(1, budget // (local.shape[1] * dim * 12))
            return torch.cat(
                [exact(q[i : i + step], local[i : i + step]) for i in range(0, len(q), step)]
            )

        # the bound is for unit vectors: scaled by the norms where they exceed 1
        scale = np.maximum(1.0, np.linalg.norm(q_np, axis=1)) * max(1.0, self._xmax)
        eps_q = torch.from_numpy((_eps(dtype, dim) * scale).astype(np.float32)).to(dev)
        fp16_overflow = dtype == torch.float16 and float(scale.max()) > 3e4  # scores near 65504
        per = mirror.element_size() * 3  # score, its top-k scratch, margin
        qb = self.query_block or max(1, budget // (min(m, 65536) * per))
        q_all = torch.from_numpy(q_np).to(dev)
        cand0 = max(32, 2 * kk + 12)
        hint = self._hints.setdefault(batch_bucket(len(q_np)), CandidateHint())

        def two_stage(q: torch.Tensor, eps: torch.Tensor, cand: int):
            t = len(q)
            vals = torch.empty((t, kk), dtype=torch.float32, device=dev)
            rows = torch.empty((t, kk), dtype=torch.int64, device=dev)
            todo = torch.arange(t, device=dev)
            while True:
                qt = q.index_select(0, todo)
                if 2 * cand >= m or fp16_overflow:  # candidates would not save work
                    ev, r = exact_all(qt)
                    vals.index_copy_(0, todo, ev)
                    rows.index_copy_(0, todo, r)
                    return vals, rows, None
                block = self.block_rows or max(1, budget // (len(qt) * per))
                low, ai = blocked_candidates(approx(qt.to(dtype)), m, cand, block)
                ev, r = _top_by_key(rescore(qt, ai), glob(ai), kk)
                done = ev[:, kk - 1] > low + eps.index_select(0, todo)
                vals.index_copy_(0, todo, ev)  # the unproved are overwritten later
                rows.index_copy_(0, todo, r)
                todo = todo[~done]
                if len(todo) == 0:
                    return vals, rows, cand  # the count that proved the last query
                cand *= 4

        out_v, out_r = [], []
        for i in range(0, len(q_all), qb):
            q, eps = q_all[i : i + qb], eps_q[i : i + qb]
            got: list[torch.Tensor] = []

            def run(c: int, q=q, eps=eps, got=got):
                v, r, proved = two_stage(q, eps, c)
                got[:] = [v, r]
                return None, None, proved

            with_hint(run, m, kk, cand0, hint)
            out_v.append(got[0])
            out_r.append(got[1])
        return torch.cat(out_v).cpu().numpy(), torch.cat(out_r).cpu().numpy()
