"""Ingest throughput on this machine: the single-process run against Ray with 1 and 2 workers.

Builds a seeded mixed collection (PNG images, WAV sounds, .txt notes, in equal parts, plus
a few bad files), and a model of the ``offline`` profile (no network), then ingests the
collection into three fresh FAISS stores, in one run: ``--engine local``, then Ray with 1
worker and with 2 workers on a local Ray started here with every core. Each time covers the
whole ``ingest()`` call (listing, reading and hashing, model loading in the actors, encoding,
writing). Reported: items/s of each, Ray's overhead at 1 worker (Ray time / single-process
time; target <= 1.15) and the speed-up from 1 to 2 workers; the three stores must hold the
same items.

    .venv/bin/python benchmarks/ingest_bench.py [--n 2000] [--batch-size 32] [--json]

The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def make_collection(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` items, a third each of 64x64 PNGs, 0.5 s WAVs and one-line notes, plus 3 bad
    files (a corrupt PNG, a truncated WAV, an empty note)."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)
    data = root / "collection"
    for sub in ("images", "sounds", "notes"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    words = [
        "red",
        "green",
        "blue",
        "seven",
        "dog",
        "bird",
        "bell",
        "rain",
        "wind",
        "stone",
        "river",
        "light",
        "dark",
    ]
    sr = 16000
    t = np.arange(sr // 2) / sr
    for i in range(n):
        kind = i % 3
        if kind == 0:
            px = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(px).save(data / "images" / f"img{i:05d}.png")
        elif kind == 1:
            f = 110 * 2 ** (rng.integers(0, 36) / 12)
            wav = 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(len(t))
            sf.write(data / "sounds" / f"snd{i:05d}.wav", wav.astype(np.float32), sr)
        else:
            text = " ".join(rng.choice(words, 6)) + f" number {i}"
            (data / "notes" / f"note{i:05d}.txt").write_text(text + "\n")
    (data / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), sr, format="WAV")
    (data / "sounds" / "bad.wav").write_bytes(buf.getvalue()[:-3000])
    (data / "notes" / "bad.txt").write_text("  \n")
    return data


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="items in the collection")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("spaner.ingest.report").setLevel(logging.ERROR)  # the 3 bad files

    import ray

    from spaner.ingest import RayOptions, ingest
    from spaner.pipeline import Spaner

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    res: dict[str, Any] = {"machine": _machine(), "n": args.n, "batch_size": args.batch_size}
    t0 = time.perf_counter()
    data = make_collection(work, args.n)
    ckpt = Spaner.from_profile(args.profile).save(work / "model")
    res["profile"] = args.profile
    res["prepare_s"] = round(time.perf_counter() - t0, 2)

    runs: dict[str, dict[str, Any]] = {}
    # untimed: the first model load in this process pays one-off imports the later runs
    # would not; after it every run loads the model the same way
    Spaner.load(ckpt)

    def run(name: str, **kw: Any) -> None:
        t = time.perf_counter()
        rep = ingest(
            [data], work / f"store-{name}", checkpoint=ckpt, batch_size=args.batch_size, **kw
        )
        sec = time.perf_counter() - t
        runs[name] = {
            "seconds": round(sec, 2),
            "items_per_s": round(rep.added / sec, 1),
            "added": rep.added,
            "bad": len(rep.bad),
            "stage_seconds": {k: round(v, 2) for k, v in rep.stage_seconds.items()},
            "worker_load_seconds": [round(x, 2) for x in rep.worker_load_seconds],
        }
        print(
            f"{name:>8}: {rep.added} items in {sec:.1f} s ({rep.added / sec:.1f} items/s)",
            file=sys.stderr,
        )

    run("local")
    t = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    res["ray_init_s"] = round(time.perf_counter() - t, 2)
    try:
        run("ray_1", engine="ray", ray=RayOptions(workers=1))
        run("ray_2", engine="ray", ray=RayOptions(workers=2))
    finally:
        ray.shutdown()
    res["runs"] = runs
    res["same_items"] = len({r["added"] for r in runs.values()}) == 1
    res["ray1_overhead"] = round(runs["ray_1"]["seconds"] / runs["local"]["seconds"], 3)
    res["ray_speedup_1_to_2"] = round(runs["ray_1"]["seconds"] / runs["ray_2"]["seconds"], 3)
    res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"Ray overhead at 1 worker: {res['ray1_overhead']:.2f}x the single-process time "
        f"(target <= 1.15); 1 -> 2 workers: {res['ray_speedup_1_to_2']:.2f}x faster",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
