"""Benchmark of the vector-store layer (spaner.index) against raw FAISS and torch.

Measures, per store size n: add throughput; exact-search QPS at batch 1/16/64 for the store
(``search`` with metadata and ``search_ids``), raw ``faiss.IndexFlatIP`` and torch
matmul+topk, side by side, with result agreement; recall@10 against exact for IVF-PQ
(plain and with the store's exact rerank from SQLite) and HNSW; bytes per vector; and the
store's overhead over raw FAISS on the same ANN index.

Data: seeded synthetic embeddings with structure like real ones (mixture of 1000 clusters in
a 64-d latent space, linearly lifted to ``--dim`` and L2-normalised); pure random vectors
would make every ANN index look bad and real data is not needed to compare engines.

    python benchmarks/index_bench.py --n 100000 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from spaner.index import EmbeddingSpace, FaissConfig, Item, create_store

log = logging.getLogger("index_bench")
BATCHES = (1, 16, 64)


def synthetic(
    n: int, dim: int, seed: int = 0, latent: int = 64, clusters: int = 1000
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, latent)).astype(np.float32)
    lift = rng.standard_normal((latent, dim)).astype(np.float32) / math.sqrt(latent)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        z = centers[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, latent)).astype(
            np.float32
        )
        x = z @ lift + 0.05 * rng.standard_normal((m, dim)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def qps(fn, queries: np.ndarray, batch: int, budget_s: float) -> float:
    """Queries per second of ``fn(batch_of_queries)`` over ~budget_s (at least 3 calls)."""
    fn(queries[:batch])  # warm-up
    done, t0, i = 0, time.perf_counter(), 0
    while True:
        s = (i * batch) % (len(queries) - batch + 1)
        fn(queries[s : s + batch])
        done += batch
        i += 1
        el = time.perf_counter() - t0
        if (el > budget_s and i >= 3) or i >= 2000:
            return done / el


def torch_topk(xt: torch.Tensor, q: np.ndarray, k: int = 10):
    return torch.topk(torch.from_numpy(q) @ xt.T, k, dim=1)


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean(
            [
                len(set(f) & set(t)) / 10
                for f, t in zip(found.tolist(), truth.tolist(), strict=False)
            ]
        )
    )


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def run_size(n: int, dim: int, budget: float, workdir: Path, ann: bool) -> dict:
    res: dict = {"n": n, "dim": dim}
    log.info("n=%d: generating data", n)
    x = synthetic(n, dim)
    q = synthetic(2048, dim, seed=1)
    space = EmbeddingSpace("bench", dim)
    mods = ("text", "image", "audio")

    def metas(s: int, m: int) -> list[Item]:
        return [Item(mods[(s + i) % 3], concept=f"c{(s + i) % 10}") for i in range(m)]

    store = create_store(workdir / f"flat-{n}", space, config=FaissConfig())
    t0 = time.perf_counter()
    for s in range(0, n, 10_000):
        store.add(x[s : s + 10_000], metas(s, min(10_000, n - s)))
    res["add_vectors_per_s"] = n / (time.perf_counter() - t0)
    log.info("n=%d: add %.0f vectors/s", n, res["add_vectors_per_s"])
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    xt = torch.from_numpy(x)

    exact = {}
    for b in BATCHES:
        r = {
            "store_search": qps(lambda qq: store.search(qq, 10), q, b, budget),
            "store_search_ids": qps(lambda qq: store.search_ids(qq, 10), q, b, budget),
            "faiss_flat": qps(lambda qq: flat.search(qq, 10), q, b, budget),
            "torch_topk": qps(lambda qq: torch_topk(xt, qq), q, b, budget),
        }
        r["ratio_store_vs_best_ref"] = r["store_search"] / max(r["faiss_flat"], r["torch_topk"])
        r["ratio_store_ids_vs_best_ref"] = r["store_search_ids"] / max(
            r["faiss_flat"], r["torch_topk"]
        )
        exact[f"batch{b}"] = r
        log.info("n=%d b=%d: %s", n, b, {k: round(v, 2) for k, v in r.items()})
    qa = q[:256]
    _, truth = flat.search(qa, 10)
    _, mine = store.search_ids(qa, 10)
    res["exact_same_ids_fraction"] = float((mine == truth).mean())
    res["exact_qps"] = exact
    res["exact_filtered_qps_batch16"] = qps(
        lambda qq: store.search_ids(
            qq, 10, __import__("spaner.index").index.Filter(modality="image")
        ),
        q,
        16,
        budget,
    )
    res["flat_bytes_per_vector_ram"] = dim * 4 + 8
    res["store_disk_bytes_per_vector"] = dir_bytes(store.path) / n
    store.close()
    flat.reset()  # free its memory before the ANN builds
    if not ann:
        return res

    nlist = int(4 * math.sqrt(n)) if n >= 100_000 else 256
    settings = {
        "ivfpq": FaissConfig(factory=f"IVF{nlist},PQ64", nprobe=32, train_size=min(n, 100_000)),
        "ivfpq_rerank": FaissConfig(
            factory=f"IVF{nlist},PQ64", nprobe=32, rerank_factor=8, train_size=min(n, 100_000)
        ),
    }
    if n <= 200_000:
        settings["hnsw"] = FaissConfig(factory="HNSW32", ef_search=64)
    res["ann"] = {}
    for name, cfg in settings.items():
        log.info("n=%d: building %s (%s)", n, name, cfg.factory)
        s = create_store(workdir / f"{name}-{n}", space, config=cfg)
        t0 = time.perf_counter()
        for st in range(0, n, 50_000):
            s.add(x[st : st + 50_000], metas(st, min(50_000, n - st)))
        build = time.perf_counter() - t0
        _, found = s.search_ids(qa, 10)
        idx = s.index
        params = (
            faiss.SearchParametersIVF(nprobe=cfg.nprobe)
            if "IVF" in cfg.factory
            else faiss.SearchParametersHNSW(efSearch=cfg.ef_search)
        )
        r = {
            "factory": cfg.factory,
            "build_s": build,
            "recall_at_10": recall_at_10(found, truth),
            "index_bytes_per_vector_ram": len(faiss.serialize_index(idx)) / n,
            "rerank_factor": cfg.rerank_factor,
        }
        for b in (1, 64):
            fetch = 10 * cfg.rerank_factor
            raw = qps(lambda qq, i=idx, f=fetch, p=params: i.search(qq, f, params=p), q, b, budget)
            st_ids = qps(lambda qq: s.search_ids(qq, 10), q, b, budget)  # noqa: B023 (called immediately)
            st_full = qps(lambda qq: s.search(qq, 10), q, b, budget)  # noqa: B023 (called immediately)
            r[f"batch{b}"] = {
                "raw_faiss_qps": raw,
                "store_search_ids_qps": st_ids,
                "store_search_qps": st_full,
                "overhead_ids": raw / st_ids,
                "overhead_search": raw / st_full,
                "extra_ms_per_query_search": 1000 * (1 / st_full - 1 / raw),
            }
        res["ann"][name] = r
        log.info("n=%d %s: %s", n, name, r)
        s.close()
    return res


def table(all_res: list[dict]) -> str:
    lines = [
        "n        batch  store.search  store.search_ids  faiss_flat  torch_topk  ratio(search/best)  ratio(ids/best)"
    ]
    for r in all_res:
        for b in BATCHES:
            e = r["exact_qps"][f"batch{b}"]
            lines.append(
                f"{r['n']:<8} {b:<6} {e['store_search']:>12.1f} {e['store_search_ids']:>17.1f} "
                f"{e['faiss_flat']:>11.1f} {e['torch_topk']:>11.1f} {e['ratio_store_vs_best_ref']:>19.2f} "
                f"{e['ratio_store_ids_vs_best_ref']:>16.2f}"
            )
    lines.append("")
    lines.append(
        "n        setting        factory           recall@10  B/vec(RAM)  raw q/s b1  store q/s b1  +ms b1  overhead b64"
    )
    for r in all_res:
        for name, a in r.get("ann", {}).items():
            lines.append(
                f"{r['n']:<8} {name:<14} {a['factory']:<17} {a['recall_at_10']:>9.3f} {a['index_bytes_per_vector_ram']:>11.1f} "
                f"{a['batch1']['raw_faiss_qps']:>11.1f} {a['batch1']['store_search_qps']:>13.1f} "
                f"{a['batch1']['extra_ms_per_query_search']:>7.2f} {a['batch64']['overhead_search']:>13.2f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n", type=int, action="append", help="store size (repeatable); default 10k,100k,1M"
    )
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per QPS measurement")
    ap.add_argument("--no-ann", action="store_true", help="skip the ANN settings")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where to build stores (default: a temp dir)"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sizes = args.n or [10_000, 100_000, 1_000_000]
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n in sizes:
            results.append(run_size(n, args.dim, args.budget, Path(tmp), ann=not args.no_ann))
    print(table(results))
    if args.json:
        print(json.dumps({"torch_threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
