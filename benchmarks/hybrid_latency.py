"""Text search latency with the full-text channel off and on, alternated in one run, against a
running server (``make demo``), one client over loopback; prints p50/p95 per setting.

    make demo &   # wait for "SPANER demo ready"
    .venv/bin/python benchmarks/hybrid_latency.py [--url http://127.0.0.1:7860] [--rounds 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import urllib.request

from machine import cpu_model

log = logging.getLogger("hybrid_latency")

QUERIES = [
    "dog", "cat", "frog", "rain", "a dog barking", "church bells", "A frog", "seven", "Una rana",
    "the sound of a cow", "bird", "car", "tree", "apple", "guitar",
]  # fmt: skip


def _one(url: str, text: str, hybrid: bool) -> float:
    body = json.dumps({"queries": [{"text": text}], "k": 10, "hybrid": hybrid}).encode()
    req = urllib.request.Request(f"{url}/v1/search", body, {"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default="http://127.0.0.1:7860")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("CPU: %s", cpu_model())
    ms: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for text in QUERIES:
            for hybrid in (False, True):
                ms[hybrid].append(_one(args.url, text, hybrid))
    out = {}
    for hybrid, v in ms.items():
        v.sort()
        out["hybrid" if hybrid else "vectors"] = {
            "n": len(v),
            "p50_ms": round(statistics.median(v), 2),
            "p95_ms": round(v[max(0, int(0.95 * len(v)) - 1)], 2),
        }
        log.info("hybrid=%s: %s", hybrid, out["hybrid" if hybrid else "vectors"])
    if args.json:
        print(json.dumps({"cpu": cpu_model(), **out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
