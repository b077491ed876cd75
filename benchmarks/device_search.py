"""Exact and IVF search on a torch device against the CPU, in one run that prints JSON.

    python benchmarks/device_search.py --json               # CUDA: 1M x 512, under ~90 s
    python benchmarks/device_search.py --json --quick       # anywhere: small sizes
    python benchmarks/device_search.py --n 200000 --dim 256 --batches 1,64

On seeded random unit vectors, per batch size (queries per second):

* ``plain_topk``: ``torch.topk(Q @ X.T)`` on the device, fp16 on CUDA (float32 on the CPU),
  queries and results left on the device: the ceiling, and not exact (fp16 scores);
* ``device_exact``: :class:`spaner.index.exact.DeviceExactSearcher` (numpy in and out, exact);
* ``cpu_exact``: :class:`spaner.index.exact.ExactSearcher` (the CPU engines; smaller size only);
* ``ivf_cpu`` (and ``ivf_gpu`` where FAISS' GPU build sees a GPU): FAISS ``IVF<nlist>,Flat``
  at ``nprobe`` 16, with recall@10 against the exact top-10.

Without a CUDA device it says so in one log line and measures the CPU at the small size.
:func:`run` takes :func:`parse`'s namespace and returns the results (``benchmarks/device.py``
calls it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spaner.index.exact import DeviceExactSearcher, ExactSearcher  # noqa: E402

from benchmarks.machine import cpu_model  # noqa: E402

__all__ = ["parse", "run", "main"]

log = logging.getLogger("benchmarks.device_search")
K = 10
NPROBE = 16
#: the target: device_exact at batch 64 reaches this fraction of plain_topk (large size)
TARGET_RATIO = 0.5


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true", help="small sizes (any machine)")
    p.add_argument("--n", type=int, help="rows of the large size [1M; quick 100k]")
    p.add_argument("--dim", type=int, help="dimension [512; quick 128]")
    p.add_argument("--batches", default="1,64,1024", help="query batch sizes, comma separated")
    p.add_argument("--seconds", type=float, help="time per measurement [0.5; quick 0.2]")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    out: dict[str, Any] = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__}
    out["faiss"] = faiss.__version__
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def unit_vectors(n: int, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded random unit vectors (float32), made on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, dim, generator=g, device=device)
    return x / x.norm(dim=1, keepdim=True)


def qps(fn: Callable[[], object], batch: int, seconds: float, sync: Callable[[], None]) -> float:
    """Queries per second of ``fn`` (one batch per call): two untimed calls, one to size the
    loop, then a loop of about ``seconds``."""
    fn()
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    reps = max(3, min(20_000, int(seconds / max(time.perf_counter() - t0, 1e-6))))
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return round(batch * reps / (time.perf_counter() - t0), 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return round(
        float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])),
        4,
    )


def ivf(x: np.ndarray, seed: int) -> tuple[faiss.Index, int]:
    """``IVF<nlist>,Flat`` (inner product), nlist about sqrt(n), trained on 50 rows a list."""
    nlist = max(16, 1 << round(np.log2(np.sqrt(len(x)))))
    index = faiss.index_factory(x.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(len(x), min(len(x), 50 * nlist), replace=False)
    faiss.extract_index_ivf(index).cp.niter = 10
    index.train(x[np.sort(sample)])
    index.add(x)
    faiss.extract_index_ivf(index).nprobe = NPROBE
    return index, nlist


def bench_size(
    n: int, dim: int, batches: list[int], args: argparse.Namespace, dev: torch.device, cpu: bool
) -> dict[str, Any]:
    """Every engine at one size; ``cpu``: the CPU exact engines too."""
    t0 = time.perf_counter()
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    xd = unit_vectors(n, dim, args.seed, dev)
    x = xd.cpu().numpy()
    queries = unit_vectors(max(batches), dim, args.seed + 1, dev)
    q_np = queries.cpu().numpy()
    plain_dtype = torch.float16 if cuda else torch.float32
    xh = xd.to(plain_dtype)
    del xd
    res: dict[str, Any] = {"n": n, "dim": dim, "plain_dtype": str(plain_dtype), "qps": {}}
    qps_ = res["qps"]

    qps_["plain_topk"] = {}
    for b in batches:
        qb = queries[:b].to(plain_dtype)
        qps_["plain_topk"][b] = qps(
            lambda qb=qb: torch.topk(qb @ xh.T, K, dim=1), b, args.seconds, sync
        )
    plain_rows = torch.topk(queries.to(plain_dtype) @ xh.T, K, dim=1)[1].cpu().numpy()
    xh = None  # free the plain copy before the engine makes its own
    if cuda:
        torch.cuda.empty_cache()

    engine = DeviceExactSearcher(dev, torch.float16 if cuda else torch.float32)
    t1 = time.perf_counter()
    _, truth = engine.search(x, q_np, K)  # the first call builds the device copies
    res["device_first_call_s"] = round(time.perf_counter() - t1, 3)
    qps_["device_exact"] = {
        b: qps(lambda b=b: engine.search(x, q_np[:b], K), b, args.seconds, sync) for b in batches
    }
    res["plain_topk_recall_at_10"] = recall(plain_rows, truth)
    engine.close()
    if cuda:
        torch.cuda.empty_cache()
    res["device_vs_plain"] = {
        b: round(qps_["device_exact"][b] / qps_["plain_topk"][b], 3) for b in batches
    }

    if cpu:
        exact = ExactSearcher()
        qps_["cpu_exact"] = {
            b: qps(lambda b=b: exact.search(x, q_np[:b], K), b, args.seconds, sync) for b in batches
        }
        _, cpu_rows = exact.search(x, q_np, K)
        res["device_exact_same_rows_as_cpu_exact"] = float(np.mean(cpu_rows == truth))
        res["cpu_exact_choices"] = {str(b): e for b, e in exact.choices.items()}
        exact.close()

    t1 = time.perf_counter()
    index, nlist = ivf(x, args.seed)
    res["ivf"] = {"nlist": nlist, "nprobe": NPROBE, "build_s": round(time.perf_counter() - t1, 2)}
    qps_["ivf_cpu"] = {
        b: qps(lambda b=b: index.search(q_np[:b], K), b, args.seconds, sync) for b in batches
    }
    res["ivf"]["cpu_recall_at_10"] = recall(index.search(q_np, K)[1], truth)
    if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:  # pragma: no cover - FAISS GPU build
        gpu_index = faiss.index_cpu_to_all_gpus(index)
        qps_["ivf_gpu"] = {
            b: qps(lambda b=b: gpu_index.search(q_np[:b], K), b, args.seconds, sync)
            for b in batches
        }
        res["ivf"]["gpu_recall_at_10"] = recall(gpu_index.search(q_np, K)[1], truth)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    log.info("n=%d dim=%d: %s", n, dim, json.dumps(res["qps"]))
    return res


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every size (see the module docstring); returns the results."""
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    n = args.n or (100_000 if args.quick else 1_000_000)
    dim = args.dim or (128 if args.quick else 512)
    small = min(n, 20_000 if args.quick else 100_000)
    if args.seconds is None:
        args.seconds = 0.2 if args.quick else 0.5
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    sizes = [small, n] if cuda and n > small else [small]
    if not cuda:
        log.info("no CUDA device: measuring the CPU only, at n=%d dim=%d", small, dim)
    out: dict[str, Any] = {"machine": machine(), "device": dev.type, "k": K, "sizes": []}
    for size in sizes:
        out["sizes"].append(bench_size(size, dim, batches, args, dev, cpu=size == small))
    big = out["sizes"][-1]
    if cuda and 64 in batches:
        ratio = big["device_vs_plain"][64]
        out["target"] = {
            "n": big["n"],
            "dim": dim,
            "batch": 64,
            "device_exact_over_plain_topk": ratio,
            "wanted": TARGET_RATIO,
            "met": ratio >= TARGET_RATIO,
        }
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for size in results["sizes"]:
            print(size["n"], size["dim"], size["qps"])
        if "target" in results:
            print("target", results["target"])


if __name__ == "__main__":
    main()
