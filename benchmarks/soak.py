"""Bounded load run over loopback: searches of every modality plus adds and deletes.

Starts ``spaner serve --profile tiny --no-ui`` on a free 127.0.0.1 port with a fresh store,
pre-fills it with a synthetic data set (texts, images, sounds) through ``POST /v1/items``, then
runs ``--workers`` client threads for ``--seconds``: text searches (JSON), image and audio
searches (multipart uploads), adds (texts and images) and deletes of the items this run added.
The first ``--warmup`` seconds are not measured; the server's resident memory (VmRSS from
/proc) is read at the end of the warm-up and at the end of the run.

Targets (exit status 1 when one fails): zero 5xx, zero transport errors or unexpected
statuses, and RSS at the end within ``--max-rss-drift`` (10%) of the post-warm-up value.

    .venv/bin/python benchmarks/soak.py --seconds 60            # make soak
    .venv/bin/python benchmarks/soak.py --seconds 20 --json

Every loop is bounded in time and count; the server is killed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
SPANER = [str(BIN / "spaner")] if (BIN / "spaner").exists() else [sys.executable, "-m", "spaner"]
OPS = {  # op -> weight in the mix
    "search_text": 4,
    "search_image": 2,
    "search_audio": 2,
    "add": 1,
    "delete": 1,
}
MAX_REQUESTS = 200_000  # hard bound on requests per run, whatever the duration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _wav(rng: np.random.Generator) -> bytes:
    import soundfile as sf

    t = np.arange(8000) / 16000
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self.transport_errors = 0
        self.requests = 0

    def record(self, op: str, status: int, seconds: float, measured: bool) -> None:
        with self.lock:
            self.requests += 1
            if measured:
                self.lat[op].append(seconds)
                self.status[op][status] += 1


EXPECTED = {"search_text": 200, "search_image": 200, "search_audio": 200, "add": 201, "delete": 204}


def prefill(url: str, data_dir: Path, n_per_concept: int) -> int:
    import httpx

    from spaner.datasets.synthetic import make_synthetic

    manifest = make_synthetic(data_dir, concepts=10, per_concept=n_per_concept, seed=0)
    files = sorted((data_dir / "images").iterdir()) + sorted((data_dir / "audio").iterdir())
    texts = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("text"):
            texts.append({"text": rec["text"], "concept": rec.get("concept")})
    added = 0
    with httpx.Client(timeout=60.0) as c:
        for i in range(0, len(files), 16):
            parts = [("files", (f.name, f.read_bytes())) for f in files[i : i + 16]]
            r = c.post(f"{url}/v1/items", files=parts)
            r.raise_for_status()
            added += len(r.json()["items"])
        r = c.post(f"{url}/v1/items", json={"items": texts})
        r.raise_for_status()
        added += len(r.json()["items"])
    return added


def worker(
    url: str,
    seed: int,
    stop: threading.Event,
    t_measure: float,
    stats: Stats,
    mine: list[int],
    mine_lock: threading.Lock,
) -> None:
    import httpx

    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    ops, weights = list(OPS), list(OPS.values())
    words = ["red", "green", "blue", "a yellow patch", "orange", "purple sound", "white", "black"]
    with httpx.Client(timeout=30.0) as c:
        while not stop.is_set() and stats.requests < MAX_REQUESTS:
            op = pick.choices(ops, weights)[0]
            req = {"k": 10, "modalities": pick.choice([["image"], ["audio"], ["text"], None])}
            req = {k: v for k, v in req.items() if v is not None}
            t0 = time.perf_counter()
            try:
                if op == "search_text":
                    r = c.post(
                        f"{url}/v1/search", json={**req, "queries": [{"text": pick.choice(words)}]}
                    )
                elif op in ("search_image", "search_audio"):
                    data = _png(rng) if op == "search_image" else _wav(rng)
                    r = c.post(
                        f"{url}/v1/search",
                        files=[("files", ("q", data))],
                        data={"request": json.dumps(req)},
                    )
                elif op == "add":
                    if pick.random() < 0.5:
                        r = c.post(
                            f"{url}/v1/items",
                            json={"items": [{"text": f"soak {uuid.uuid4().hex}"}]},
                        )
                    else:
                        r = c.post(f"{url}/v1/items", files=[("files", ("a.png", _png(rng)))])
                    if r.status_code == 201:
                        with mine_lock:
                            mine.extend(int(i["id"]) for i in r.json()["items"])
                else:
                    with mine_lock:
                        victim = mine.pop(0) if mine else None
                    if victim is None:
                        continue
                    r = c.delete(f"{url}/v1/items/{victim}")
            except httpx.HTTPError:
                with stats.lock:
                    stats.transport_errors += 1
                continue
            stats.record(op, r.status_code, time.perf_counter() - t0, time.monotonic() >= t_measure)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured duration")
    ap.add_argument("--warmup", type=float, default=10.0, help="unmeasured seconds first")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--profile", default="tiny", help="the server's encoder profile")
    ap.add_argument("--prefill-per-concept", type=int, default=10)
    ap.add_argument("--max-rss-drift", type=float, default=0.10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="spaner-soak-") as tmp:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            *SPANER,
            "serve",
            "--profile",
            args.profile,
            "--store",
            f"{tmp}/store",
            "--no-ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "-q",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                    print(f"server did not start: {err}", file=sys.stderr)
                    return 2
                try:
                    if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            prefilled = prefill(url, Path(tmp) / "data", args.prefill_per_concept)
            stats, stop, mine, mine_lock = Stats(), threading.Event(), [], threading.Lock()
            start = time.monotonic()
            t_measure = start + args.warmup
            threads = [
                threading.Thread(
                    target=worker,
                    args=(url, s, stop, t_measure, stats, mine, mine_lock),
                    daemon=True,
                )
                for s in range(args.workers)
            ]
            for t in threads:
                t.start()
            time.sleep(args.warmup)
            rss_warm = rss_mb(proc.pid)
            time.sleep(args.seconds)
            rss_end = rss_mb(proc.pid)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            count = httpx.get(f"{url}/v1/health", timeout=10).json().get("items")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    rows, total, n5xx, unexpected = [], 0, 0, 0
    for op in OPS:
        lat = stats.lat.get(op, [])
        sts = dict(stats.status.get(op, {}))
        bad5 = sum(n for s, n in sts.items() if s >= 500)
        other = sum(n for s, n in sts.items() if s != EXPECTED[op] and s < 500)
        total += len(lat)
        n5xx += bad5
        unexpected += other
        rows.append(
            {
                "op": op,
                "requests": len(lat),
                "p50_ms": round(_pct(lat, 50), 1),
                "p99_ms": round(_pct(lat, 99), 1),
                "5xx": bad5,
                "other_non_2xx": other,
                "statuses": {str(k): v for k, v in sorted(sts.items())},
            }
        )
    drift = (rss_end - rss_warm) / rss_warm
    all_lat = [x for op in OPS for x in stats.lat.get(op, [])]
    result = {
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "workers": args.workers,
        "prefilled": prefilled,
        "items_at_end": count,
        "requests": total,
        "throughput_rps": round(total / args.seconds, 1),
        "p50_ms": round(_pct(all_lat, 50), 1),
        "p99_ms": round(_pct(all_lat, 99), 1),
        "5xx": n5xx,
        "unexpected_status": unexpected,
        "transport_errors": stats.transport_errors,
        "rss_warm_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_drift": round(drift, 4),
        "ops": rows,
    }
    failures = []
    if n5xx:
        failures.append(f"{n5xx} responses were 5xx")
    if unexpected or stats.transport_errors:
        failures.append(
            f"{unexpected} unexpected statuses, {stats.transport_errors} transport errors"
        )
    if abs(drift) > args.max_rss_drift:
        failures.append(f"RSS drift {drift:+.1%} over {args.max_rss_drift:.0%}")
    if total == 0:
        failures.append("no requests were measured")
    result["failures"] = failures
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'op':<14}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'5xx':>6}{'other':>7}")
        for r in rows:
            print(
                f"{r['op']:<14}{r['requests']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}"
                f"{r['5xx']:>6}{r['other_non_2xx']:>7}"
            )
        print(
            f"{'all':<14}{total:>9}{result['p50_ms']:>9}{result['p99_ms']:>9}{n5xx:>6}"
            f"{unexpected:>7}"
        )
        print(
            f"throughput {result['throughput_rps']} req/s over {args.seconds:.0f} s "
            f"({args.workers} workers, {prefilled} items pre-filled, {count} at the end); "
            f"RSS {rss_warm:.0f} MB after warm-up -> {rss_end:.0f} MB at the end "
            f"({drift:+.1%})"
        )
        for f in failures:
            print("FAIL", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
