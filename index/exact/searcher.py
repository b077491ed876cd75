""":class:`ExactSearcher`: exact top-k over one changing matrix, with the engine chosen by
measurement and the engines' copies of the matrix (transposed, fp16/bf16, int8) kept and
extended on appends."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .choice import AdaptiveChoice, batch_bucket
from .float32 import topk_inner_product, topk_single_thread, topk_split, topk_transposed
from .half import mirror_error_within_bound, topk_two_stage
from .int8 import INT8_ROW_OVERHEAD, Int8Copy, int8_available, int8_error_within_bound, topk_int8
from .machine import bf16_matmul_is_native
from .two_stage import CandidateHint

__all__ = ["ExactSearcher", "ENGINES", "SMALL_BATCH"]

#: Batches up to this size count as "matrix-vector" work: the transposed and fp16 engines
#: are offered; larger batches get the bf16 matrix engine.
SMALL_BATCH = 4
#: Engine names :class:`ExactSearcher` knows (``table`` values that force one).
ENGINES = ("torch", "transposed", "split", "single", "fp16", "bf16", "int8")


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
