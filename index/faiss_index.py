"""FAISS index plumbing: factory strings, training thresholds, search parameters, GPU moves."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import faiss
import numpy as np

T = TypeVar("T")
log = logging.getLogger(__name__)

__all__ = [
    "FactoryInfo",
    "parse_factory",
    "build_index",
    "configure_training",
    "search_params",
    "to_gpu",
    "gpu_count",
    "with_omp_threads",
]


@dataclass(frozen=True)
class FactoryInfo:
    """What the store needs to know about a FAISS factory string."""

    factory: str
    kind: str  # "flat" | "ivf" | "hnsw" | "other"
    nlist: int = 0
    pq_bits: int = 0
    can_remove: bool = True  # HNSW cannot remove vectors
    gpu_ok: bool = True  # FAISS GPU has Flat and IVF, not HNSW

    @property
    def min_train(self) -> int:
        """Vectors needed before training (FAISS warns below 39 per centroid; we ask 30)."""
        centroids = max(self.nlist, 2**self.pq_bits if self.pq_bits else 0)
        return 30 * centroids


def parse_factory(factory: str) -> FactoryInfo:
    """Classify ``factory`` ("Flat", "IVF1024,PQ64", "HNSW32", "OPQ64,IVF256,PQ64x8", …)."""
    f = factory.strip()
    if f == "Flat":
        return FactoryInfo(f, "flat")
    if f.startswith("HNSW") or ",HNSW" in f:
        return FactoryInfo(f, "hnsw", can_remove=False, gpu_ok=False)
    m = re.search(r"IVF(\d+)", f)
    pq = re.search(r"(?<![O])PQ\d+(?:x(\d+))?", f)
    bits = (int(pq.group(1)) if pq and pq.group(1) else 8) if pq else 0
    if m:
        return FactoryInfo(f, "ivf", nlist=int(m.group(1)), pq_bits=bits)
    return FactoryInfo(f, "other", pq_bits=bits)


def build_index(dim: int, info: FactoryInfo) -> faiss.IndexIDMap2:
    """An empty id-mapped inner-product index for ``info.factory``."""
    try:
        inner = faiss.index_factory(dim, info.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"FAISS cannot build factory {info.factory!r} at dim {dim}: {exc}"
        ) from exc
    return faiss.IndexIDMap2(inner)


def configure_training(index: faiss.Index, iterations: int, points_per_centroid: int) -> None:
    """Make training fast: few k-means iterations, a bounded sample per centroid, and no
    polysemous training (FAISS' factory turns it on for IVF-PQ; it is a slow annealing that
    only helps Hamming-distance filtering, which the store does not use)."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is not None:
        ivf.cp.niter = iterations
        ivf.cp.max_points_per_centroid = points_per_centroid
        if hasattr(ivf, "do_polysemous_training"):
            ivf.do_polysemous_training = False
        pq = getattr(ivf, "pq", None)
        if pq is not None:
            pq.cp.niter = iterations
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexPQ):
        inner.do_polysemous_training = False
        inner.pq.cp.niter = iterations


def search_params(
    index: faiss.IndexIDMap2,
    info: FactoryInfo,
    *,
    nprobe: int,
    ef_search: int,
    ids: np.ndarray | None,
) -> faiss.SearchParameters | None:
    """SearchParameters carrying the configured nprobe/efSearch and an optional id selector.

    (Passing parameters overrides the index's own nprobe, so they are always set here.)
    """
    sel = (
        faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        if ids is not None
        else None
    )
    if info.kind == "ivf":
        p = faiss.SearchParametersIVF(nprobe=nprobe)
    elif info.kind == "hnsw":
        p = faiss.SearchParametersHNSW(efSearch=ef_search)
    else:
        p = faiss.SearchParameters()
    if sel is not None:
        p.sel = sel
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexPreTransform):
        outer = faiss.SearchParametersPreTransform(index_params=p)
        if sel is not None:
            outer.sel = sel
        outer._keep = (p, sel)  # keep the SWIG objects alive
        return outer
    p._keep = sel
    return p


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    _warn_if_gpu_build_overwritten()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


@functools.cache
def _warn_if_gpu_build_overwritten() -> None:
    """faiss-gpu and faiss-cpu (a dependency) install the same ``faiss`` files, and pip may
    write faiss-cpu's last: then the GPU build is installed but not what imports."""
    try:
        importlib.metadata.version("faiss-gpu")
    except importlib.metadata.PackageNotFoundError:
        return
    if not hasattr(faiss, "StandardGpuResources"):
        log.warning(
            "faiss-gpu is installed but `import faiss` loads the CPU build (faiss-cpu's files "
            "were written over it); to search with FAISS on the GPU run: "
            "pip install --force-reinstall --no-deps faiss-gpu==%s",
            importlib.metadata.version("faiss-gpu"),
        )


def to_gpu(index: faiss.Index) -> faiss.Index:  # pragma: no cover - needs a GPU
    """A GPU clone of a CPU index on all GPUs (the CPU index stays the persisted one)."""
    return faiss.index_cpu_to_all_gpus(index)


def with_omp_threads(n: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` with FAISS' OpenMP limited to ``n`` threads *in the calling thread only*
    (``omp_set_num_threads`` sets a per-thread ICV), restoring the previous value after."""
    prev = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        return fn()
    finally:
        faiss.omp_set_num_threads(prev)
