"""The exact two-stage search shared by the half-precision and int8 engines.

An approximate product picks candidates; the float32 vectors rescore them. It stays
**exact**: each approximate score is within ``eps`` of the float32 one (the engine's error
bound), so a row outside the candidates scores at most ``(lowest candidate's approximate
score) + eps``. When the candidates' ``k``-th exact score is above that, no other row can
enter the top-k. A query whose candidates do not prove it is searched again with 4x the
candidates, and in float32 once candidates would not save work. :class:`CandidateHint`
learns the first candidate count from earlier calls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .float32 import topk_inner_product

__all__ = ["CandidateHint", "blocked_candidates", "with_hint", "two_stage", "single_query"]


def blocked_candidates(
    scores: Callable[[int, int], torch.Tensor], n: int, cand: int, block_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``cand`` rows with the best approximate scores over ``n`` rows, and the lowest of
    those scores (as :func:`two_stage` wants them), where ``scores(lo, hi)`` returns the
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


def with_hint(
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


def two_stage(
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

        return single_query(matrix, q.numpy(), k, cand, eps, select)
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


def single_query(
    matrix: np.ndarray,
    q: np.ndarray,
    k: int,
    cand: int,
    eps: float,
    select: Callable[[int], tuple[np.ndarray, float]],
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """:func:`two_stage` for one query ``q`` (``[1, dim]``) in numpy: ``select(c)`` returns
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
