"""Seconds per training epoch of the demo's fit, from its feature cache (no encoding).

Trains the demo's setting (``demo.TRAIN["tuxpaint"]`` over the ``offline`` profile) on the demo's
training manifest twice, for a short and a longer schedule, and prints the per-epoch time as
their difference over the extra epochs (so loading, the initial loss and the calibration drop
out), and the last training losses (a change that claims the same result must print the same
losses). Run ``make demo`` (or ``spaner demo --no-serve``) once first. To compare two commits,
run this from each checkout alternately, in one sitting: this VM's speed drifts between hours.

    .venv/bin/python benchmarks/fit_speed.py --workdir .spaner-demo --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from machine import cpu_model


def _fit_seconds(workdir: Path, epochs: int, workers: int | None) -> tuple[float, list[float]]:
    from spaner.demo import TRAIN
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner
    from spaner.profiles import get_profile
    from spaner.training.features import FeatureCache

    prof = get_profile("offline")
    setting = {**prof.train, **TRAIN["tuxpaint"], "epochs": epochs}
    if workers is not None:
        setting["workers"] = workers
    cfg = TrainConfig(shots=5, seed=0, **setting)
    sp = Spaner.from_profile("offline")
    prepared = sp.prepare(
        workdir / "tuxpaint" / "demo-train.jsonl", cfg, FeatureCache(workdir / "cache")
    )
    start = time.perf_counter()
    result = sp.fit(prepared, cfg, progress=False)
    return time.perf_counter() - start, result.train_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path(".spaner-demo"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument(
        "--workers", type=int, default=None, help="training shards (default: the demo's setting)"
    )
    ap.add_argument("--short", type=int, default=2, help="epochs of the short schedule")
    ap.add_argument("--long", type=int, default=10, help="epochs of the longer schedule")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    short, _ = _fit_seconds(args.workdir, args.short, args.workers)
    long, losses = _fit_seconds(args.workdir, args.long, args.workers)
    print(f"CPU: {cpu_model()}; torch threads: {args.threads}; workers: {args.workers}")
    print(f"fit {args.short} epochs: {short:.1f} s; {args.long} epochs: {long:.1f} s")
    print(f"per epoch: {(long - short) / (args.long - args.short):.2f} s")
    print("last losses:", " ".join(f"{x:.6f}" for x in losses[-3:]))


if __name__ == "__main__":
    main()
