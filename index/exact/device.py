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
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .choice import batch_bucket
from .device_copies import DeviceRows, take
from .device_graph import GraphCache, GraphedPass
from .half import mirror_eps
from .machine import _bound_check_rows
from .two_stage import CandidateHint, blocked_candidates, with_hint

__all__ = ["DeviceExactSearcher", "device_kernel_ok", "order_keys"]

log = logging.getLogger(__name__)

_CPU_BUDGET = 256 << 20
_CUDA_BUDGET_MAX = 8 << 30
_NORM_ROWS = 65536  # rows per step when row norms are read
#: first passes whose score block is at most this large are replayed as CUDA graphs
_GRAPH_MAX_BYTES = 512 << 20
_LOW32 = (1 << 32) - 1
#: (device, dtype, dim) -> whether the device's matmul keeps within the mirror's bound
_KERNEL_OK: dict[tuple[str, torch.dtype, int], bool] = {}
_FLAGS = threading.RLock()  # the cuBLAS flags are process-wide


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


class DeviceExactSearcher:
    """Exact top-k over one (changing) float32 matrix on a torch ``device`` (see the module
    docstring). ``dtype``: the mirror's (default float16; float32 when the device's half
    matmul breaks the bound). ``memory_budget`` (bytes of working memory per block),
    ``block_rows`` and ``query_block`` override the sizes derived from the budget (the tests
    force tiny blocks). ``float32_copy``: keep the float32 matrix on the device (None: when
    it fits; on the CPU the matrix itself is used). ``cuda_graphs``: replay small unfiltered
    first passes as CUDA graphs (:mod:`.device_graph`)."""

    def __init__(
        self,
        device: str | torch.device = "cuda",
        dtype: torch.dtype = torch.float16,
        memory_budget: int | None = None,
        block_rows: int | None = None,
        query_block: int | None = None,
        float32_copy: bool | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype = dtype
        self.memory_budget = memory_budget
        self.block_rows = block_rows
        self.query_block = query_block
        self.float32_copy = float32_copy
        self.cuda_graphs = cuda_graphs
        self._graphs = GraphCache()
        self._lock = threading.RLock()
        self._mirror: DeviceRows | None = None
        self._x32: DeviceRows | None = None
        self._norm_rows = 0  # rows whose norms are in _xmax
        self._xmax = 0.0  # largest row norm
        self._hints: dict[int, CandidateHint] = {}
        self._free: int | None = None  # free device memory when last asked
        self._calls = 0

    def reset(self, appended: bool = False) -> None:
        """The matrix changed; ``appended``: only rows were added at the end, so the device
        copies are extended on the next search instead of rebuilt."""
        if not appended:
            with self._lock:
                self._mirror = self._x32 = None
                self._norm_rows, self._xmax = 0, 0.0
                self._graphs.clear()
                self._hints.clear()

    close = reset

    def _budget(self) -> int:
        """Working memory per block: the free device memory is asked again every 64th
        search (a driver call costs more than a small search)."""
        if self.memory_budget:
            return self.memory_budget
        if self.device.type != "cuda":
            return _CPU_BUDGET
        self._calls += 1
        if self._free is None or self._calls % 64 == 0:
            self._free = torch.cuda.mem_get_info(self.device)[0]
        return max(64 << 20, min(self._free // 4, _CUDA_BUDGET_MAX))

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
                self._mirror = DeviceRows(self.device, dtype)
            mirror = self._mirror.sync(matrix)
        if not host and self.float32_copy is not False:
            if self._x32 is None and (self.float32_copy or self._fits(n * d * 4)):
                self._x32 = DeviceRows(self.device, torch.float32)
            if self._x32 is not None:
                x32 = self._x32.sync(matrix)
        for lo in range(self._norm_rows, n, _NORM_ROWS):
            block = matrix[lo : min(n, lo + _NORM_ROWS)]
            self._xmax = max(self._xmax, float(np.sqrt(np.einsum("ij,ij->i", block, block).max())))
        if self._norm_rows != n:
            self._norm_rows, self._free = n, None  # copies changed: ask for free memory again
            self._graphs.clear()  # they read the old copies
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
        sub_t = self._upload(sub) if sub is not None else None
        keep = self._upload(np.ascontiguousarray(mask, dtype=bool)) if mask is not None else None
        m = len(sub) if sub is not None else len(matrix)
        budget = self._budget()

        def rows32(rows: torch.Tensor) -> torch.Tensor:  # float32 rows (global numbers)
            if x32 is not None:
                return take(x32, rows)
            return torch.from_numpy(matrix[rows.cpu().numpy()]).to(dev)

        def glob(local: torch.Tensor) -> torch.Tensor:  # local row number -> matrix row
            return take(sub_t, local) if sub_t is not None else local

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
                s = s.masked_fill(~take(keep, rows), float("-inf"))
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
        eps_unit = _eps(dtype, dim) * max(1.0, self._xmax)
        big = float(np.linalg.norm(q_np, axis=1).max()) * max(1.0, self._xmax)
        fp16_overflow = dtype == torch.float16 and big > 3e4  # scores near fp16's 65504
        per = mirror.element_size() * 3  # score, its top-k scratch, margin
        qb = self.query_block or max(1, budget // (min(m, 65536) * per))

        def first_pass(q: torch.Tensor, cand: int) -> tuple[torch.Tensor, ...]:
            """(top-k scores, rows, proved) of one candidate pass."""
            block = self.block_rows or max(1, budget // (len(q) * per))
            low, ai = blocked_candidates(approx(q.to(dtype)), m, cand, block)
            ev, r = _top_by_key(rescore(q, ai), glob(ai), kk)
            return ev, r, ev[:, kk - 1] > low + q.norm(dim=1).clamp_min(1.0) * eps_unit

        def graphed(q_blk: np.ndarray, cand: int) -> GraphedPass | None:
            t = len(q_blk)
            if not (
                self.cuda_graphs
                and dev.type == "cuda"
                and keep is None
                and sub_t is None
                and x32 is not None
                and t * m * mirror.element_size() <= min(_GRAPH_MAX_BYTES, budget // 3)
                and self.block_rows is None
            ):
                return None
            key = (t, cand, kk)
            return self._graphs.get(
                key, lambda: GraphedPass(lambda q: first_pass(q, cand), self._upload(q_blk))
            )

        def two_stage(q_blk: np.ndarray, cand: int) -> tuple[np.ndarray, np.ndarray, int | None]:
            t = len(q_blk)
            vals, rows = np.empty((t, kk), np.float32), np.empty((t, kk), np.int64)
            todo, q = np.arange(t), None
            while True:
                if 2 * cand >= m or fp16_overflow:  # candidates would not save work
                    qt = self._upload(q_blk[todo])
                    vals[todo], rows[todo] = self._fetch(*exact_all(qt))
                    return vals, rows, None
                g = graphed(q_blk, cand) if q is None else None
                if g is not None:
                    out, q = g(q_blk), g.q
                else:
                    q = self._upload(q_blk) if q is None else q
                    sel = None if len(todo) == t else torch.from_numpy(todo).to(dev)
                    out = first_pass(q if sel is None else q.index_select(0, sel), cand)
                # results and proofs come back together: one wait per pass
                vals[todo], rows[todo], done = self._fetch(*out)
                todo = todo[~done]
                if len(todo) == 0:
                    return vals, rows, cand  # the count that proved the last query
                cand *= 4

        hint = self._hints.setdefault(batch_bucket(len(q_np)), CandidateHint())
        cand0 = max(32, 2 * kk + 12)
        got = [
            with_hint(lambda c, i=i: two_stage(q_np[i : i + qb], c), m, kk, cand0, hint)
            for i in range(0, len(q_np), qb)
        ]
        if len(got) == 1:
            return got[0]
        return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])

    def _upload(self, a: np.ndarray) -> torch.Tensor:
        """``a`` on the device, copied from pinned memory without waiting."""
        t = torch.from_numpy(a)
        if self.device.type != "cuda":
            return t
        return t.pin_memory().to(self.device, non_blocking=True)

    def _fetch(self, *tensors: torch.Tensor) -> list[np.ndarray]:
        """The tensors on the host, copied together with one wait."""
        if self.device.type != "cuda":
            return [t.numpy() for t in tensors]
        host = [t.to("cpu", non_blocking=True) for t in tensors]
        torch.cuda.current_stream(self.device).synchronize()
        return [h.numpy() for h in host]
