"""The device engine's first pass replayed as one CUDA graph.

A pass (half-precision product, top-k, float64 rescoring, tie-rule keys, proof) is about 40
small kernels; launching them one by one costs more host time than the GPU spends on a small
batch. Captured once per shape (batch, candidate count, k, the copies it reads) and replayed,
it costs one launch. Graphs are dropped when the matrix copies change.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np
import torch

__all__ = ["GraphedPass", "GraphCache"]

log = logging.getLogger(__name__)


class GraphedPass:
    """``fn(q)`` (a tuple of tensors) captured into a CUDA graph; a call copies new queries
    (float32, on the host) into the captured input and replays it. The outputs are the same
    tensors each call: read them before the next."""

    def __init__(
        self, fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], example: torch.Tensor
    ) -> None:
        dev = example.device
        self.q = example.clone()
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            fn(self.q)  # warm-up outside the graph (cuBLAS handles and workspaces)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.q)

    def __call__(self, q: np.ndarray) -> tuple[torch.Tensor, ...]:
        self.q.copy_(torch.from_numpy(q).pin_memory(), non_blocking=True)
        self.graph.replay()
        return self.out


class GraphCache:
    """The last ``size`` graphs by key. A capture that fails turns graphs off for good (the
    engine then launches the kernels one by one, with the same results)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.broken = False
        self._graphs: OrderedDict[Hashable, GraphedPass] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], GraphedPass]) -> GraphedPass | None:
        if self.broken:
            return None
        g = self._graphs.get(key)
        if g is not None:
            self._graphs.move_to_end(key)
            return g
        try:
            g = make()
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed (%s): kernels are launched one by one", exc)
            self.broken = True
            return None
        self._graphs[key] = g
        while len(self._graphs) > self.size:
            self._graphs.popitem(last=False)
        return g

    def clear(self) -> None:
        self._graphs.clear()
