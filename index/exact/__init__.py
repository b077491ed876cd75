"""Exact inner-product top-k over a float32 matrix, with an optional row mask or subset.

The float32 matrix (FAISS' flat storage, used zero-copy) can be searched several ways that
all return the exact top-k; which is fastest depends on the batch size, the matrix size, the
CPU and the load, so :class:`ExactSearcher` picks one per batch-size bucket by measurement
(:class:`AdaptiveChoice`) and keeps re-timing the others now and then. One module per engine:

* :mod:`.float32`: ``torch`` (the reference sgemm + topk), ``transposed`` (from a transposed
  copy, for one query or a few), ``split`` (row slices on a thread pool) and ``single`` (one
  query on the calling thread, FAISS' SIMD kernel);
* :mod:`.half`: ``fp16`` and ``bf16``, two-stage over a half-precision mirror;
* :mod:`.int8`: ``int8``, two-stage over an int8 copy through torch's quantized kernels;
* :mod:`.two_stage`: the candidate / float32-rescore / proof / widen loop both share; it
  stays **exact** because each engine bounds its approximate score's error;
* :mod:`.choice`: the measured choice (:class:`AdaptiveChoice`), the fixed torch-vs-FAISS
  table (:func:`choose_exact_engine`, :func:`calibrate`) and the device a store's exact
  search runs on (:func:`resolve_search_device`);
* :mod:`.searcher`: :class:`ExactSearcher`, which offers the engines that fit the call and
  keeps their copies of the matrix (built the first time an engine runs, extended on
  appends, within a memory budget);
* :mod:`.device`: :class:`DeviceExactSearcher`, the same two-stage proof on a torch device
  (CUDA) over a device-resident fp16 mirror, in blocks that fit the device's memory, with a
  fixed tie rule (score, then lower row);
* :mod:`.machine`: the CPU's feature flags.
"""

from __future__ import annotations

from .choice import (
    AdaptiveChoice,
    batch_bucket,
    calibrate,
    choose_exact_engine,
    resolve_search_device,
)
from .device import DeviceExactSearcher, device_kernel_ok, order_keys
from .float32 import topk_inner_product, topk_single_thread, topk_split, topk_transposed
from .half import bf16_error_within_bound, mirror_eps, mirror_error_within_bound, topk_two_stage
from .int8 import (
    INT8_ROW_OVERHEAD,
    Int8Copy,
    int8_available,
    int8_eps,
    int8_error_within_bound,
    topk_int8,
)
from .machine import bf16_matmul_is_native
from .searcher import ENGINES, SMALL_BATCH, ExactSearcher
from .two_stage import CandidateHint

__all__ = [
    "topk_inner_product",
    "topk_two_stage",
    "topk_int8",
    "CandidateHint",
    "Int8Copy",
    "INT8_ROW_OVERHEAD",
    "int8_eps",
    "int8_available",
    "int8_error_within_bound",
    "topk_transposed",
    "choose_exact_engine",
    "calibrate",
    "bf16_matmul_is_native",
    "mirror_eps",
    "ExactSearcher",
    "DeviceExactSearcher",
    "device_kernel_ok",
    "order_keys",
    "resolve_search_device",
    "AdaptiveChoice",
    "batch_bucket",
    "topk_split",
    "topk_single_thread",
    "bf16_error_within_bound",
    "mirror_error_within_bound",
    "ENGINES",
    "SMALL_BATCH",
]
