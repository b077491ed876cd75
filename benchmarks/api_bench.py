"""REST API benchmark: text-search latency and throughput over loopback, and API overhead.

Starts the service (uvicorn, in this process, bound to 127.0.0.1 on a free port) on a fresh
store of ``--items`` synthetic text items, then for each concurrency level sends
``--requests`` text searches (a bounded count) and reports p50/p99 latency and requests/s.
The same queries go through the search pipeline directly (no HTTP) in the same run; the
difference of the medians is the API's overhead.

    .venv/bin/python benchmarks/api_bench.py --profile tiny --json
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WORDS = [
    "red",
    "green",
    "blue",
    "dog",
    "cat",
    "bird",
    "barking",
    "singing",
    "square",
    "circle",
    "loud",
    "quiet",
    "bright",
    "dark",
    "small",
    "large",
]


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=4)) + f" #{i}" for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--items", type=int, default=2000, help="text items in the store")
    ap.add_argument(
        "--requests", type=int, default=300, help="searches per concurrency level (bounded)"
    )
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    import httpx
    import uvicorn
    from spaner.app.collection import NewItem, add_items
    from spaner.app.main import create_app
    from spaner.app.retrieval import query_vector, search
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    tmp = Path(tempfile.mkdtemp(prefix="spaner-api-bench-"))
    state = ServiceState.open(
        Settings(store=tmp / "store", profile=args.profile, ui=False, max_k=max(100, args.k))
    )
    with state.reading() as active:
        texts = _texts(args.items, 0)
        for s in range(0, len(texts), 256):
            add_items(active, [NewItem(text=t) for t in texts[s : s + 256]])
    queries = _texts(args.requests, 1)

    # direct: the same pipeline the route runs, without HTTP
    def direct(q: str) -> float:
        t0 = time.perf_counter()
        with state.reading() as active:
            search(active, query_vector(active, texts=[q]), args.k)
        return time.perf_counter() - t0

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(state=state),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded wait for startup
        if server.started:
            break
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/search"
    local = threading.local()

    def one(q: str) -> float:
        c = getattr(local, "c", None) or httpx.Client(timeout=60)
        local.c = c
        t0 = time.perf_counter()
        r = c.post(url, json={"queries": [{"text": q}], "k": args.k})
        r.raise_for_status()
        return time.perf_counter() - t0

    # paired, interleaved: one direct call then one HTTP call per query, so load from
    # anything else on the machine hits both alike
    for q in queries[:20]:
        direct(q), one(q)  # warm-up
    direct_lat, paired_api = [], []
    for q in queries:
        direct_lat.append(direct(q))
        paired_api.append(one(q))

    levels = {}
    for conc in args.concurrency:
        with ThreadPoolExecutor(conc) as pool:
            list(pool.map(one, queries[: max(conc, 10)]))  # warm-up connections
            t0 = time.perf_counter()
            lat = list(pool.map(one, queries))
            wall = time.perf_counter() - t0
        levels[str(conc)] = {
            "requests": len(lat),
            "p50_ms": round(_pct(lat, 50), 2),
            "p99_ms": round(_pct(lat, 99), 2),
            "qps": round(len(lat) / wall, 1),
        }
    server.should_exit = True
    thread.join(10)
    state.close()

    direct_p50 = _pct(direct_lat, 50)
    report = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "profile": args.profile,
        "items": args.items,
        "k": args.k,
        "direct_p50_ms": round(direct_p50, 2),
        "direct_p99_ms": round(_pct(direct_lat, 99), 2),
        "direct_qps": round(len(direct_lat) / sum(direct_lat), 1),
        "api": levels,
        "paired_api_p50_ms": round(_pct(paired_api, 50), 2),
        "overhead_p50_ms": round(_pct(paired_api, 50) - direct_p50, 2),
        "overhead_mean_ms": round(float(np.mean(paired_api) - np.mean(direct_lat)) * 1e3, 2),
    }
    print("| concurrency | requests | p50 ms | p99 ms | req/s |\n|---|---|---|---|---|")
    print(
        f"| direct (no HTTP) | {len(direct_lat)} | {report['direct_p50_ms']} | {report['direct_p99_ms']} | {report['direct_qps']} |"
    )
    for c, v in levels.items():
        print(f"| {c} | {v['requests']} | {v['p50_ms']} | {v['p99_ms']} | {v['qps']} |")
    print(
        f"API overhead (paired, interleaved, concurrency 1): p50 {report['overhead_p50_ms']} ms, "
        f"mean {report['overhead_mean_ms']} ms"
    )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
