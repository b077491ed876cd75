"""What ingest's transcription of spoken audio costs (``spaner ingest --transcribe``).

Ingests the same audio clips into fresh stores once per mode (``never``, ``auto``, ...), in one
process with the encoders loaded once beforehand, and reports per mode the ingest call's wall
and CPU seconds (every thread of the process), the transcribe stage's seconds, and how many clips
got a transcript; then what each mode adds per clip over ``never``.

Clips: with ``--workdir`` (a ``make demo`` work folder), the demo's audio items
(``tuxpaint/manifest.jsonl``) with the demo's checkpoint and frozen-feature cache, as the demo
ingests them; else ``--n`` eSpeak NG words and ``--n`` synthetic sounds (chirps, tones, noise)
with an untrained ``offline`` model (MiniLM text, Whisper tiny.en audio).

    .venv/bin/python benchmarks/transcribe_cost.py [--workdir .spaner-demo] [--modes never,auto]
        [--n 20] [--json]

The last line with ``--json`` is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

log = logging.getLogger("transcribe_cost")

WORDS = [
    "guitar", "tomato", "umbrella", "train", "bicycle", "apple", "house", "flower", "horse",
    "window", "rabbit", "pencil", "orange", "rocket", "castle", "candle", "bridge", "garden",
    "kitten", "mountain",
]  # fmt: skip
RATE = 16000


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def generated_clips(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` eSpeak NG words and ``n`` sounds (gated chirps, tones, noise) as WAV files."""
    import soundfile as sf

    from spaner.datasets.espeak import synthesize_isolated

    rng = np.random.default_rng(seed)
    out = root / "clips"
    out.mkdir(parents=True)
    for i in range(n):
        samples, _ = synthesize_isolated(WORDS[i % len(WORDS)], voice="en", out_rate=RATE)
        sf.write(out / f"word{i:03d}.wav", samples.astype(np.float32) / 32768.0, RATE)
        t = np.arange(int(rng.uniform(0.5, 3.0) * RATE)) / RATE
        kind = i % 3
        if kind == 0:
            f0, f1 = rng.uniform(200, 800), rng.uniform(400, 2000)
            wave = np.sin(2 * np.pi * (f0 + f1 * t) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
        elif kind == 1:
            wave = np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
        else:
            wave = rng.standard_normal(t.size)
        sf.write(
            out / f"sound{i:03d}.wav", (0.3 * wave / np.abs(wave).max()).astype("float32"), RATE
        )
    return out


def _setup(args: argparse.Namespace, tmp: Path) -> tuple[list[Path], Path, Any]:
    """(paths to ingest, checkpoint, feature cache or None)."""
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache

    if args.workdir is not None:
        work = Path(args.workdir)
        manifest = work / "tuxpaint" / "manifest.jsonl"
        if not manifest.is_file() or not (work / "checkpoint").is_dir():
            raise SystemExit(f"{work}: no demo collection and checkpoint; run `make demo` first")
        return [manifest], work / "checkpoint", FeatureCache(work / "cache")
    clips = generated_clips(tmp, args.n)
    sp = Spaner.from_profile("offline", modalities=["text", "audio"])
    return [clips], sp.save(tmp / "checkpoint"), None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=None, help="a `make demo` work folder")
    p.add_argument("--modes", default="never,auto", help="comma-separated transcribe modes")
    p.add_argument("--n", type=int, default=20, help="generated words and sounds (no --workdir)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from spaner.ingest import ingest
    from spaner.model.shared_encoders import shared_encoders
    from spaner.pipeline import Spaner

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    machine = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d, shared_encoders():
        tmp = Path(d)
        paths, ckpt, cache = _setup(args, tmp)
        Spaner.load(ckpt)  # the encoders, loaded once for every mode (shared_encoders)
        for mode in modes:
            t0, c0 = time.perf_counter(), _cpu_seconds()
            rep = ingest(
                paths,
                tmp / f"store-{mode}",
                checkpoint=ckpt,
                modalities=["audio"],
                feature_cache=cache,
                transcribe=mode,
            )
            rows[mode] = {
                "clips": rep.added,
                "wall_s": round(time.perf_counter() - t0, 2),
                "cpu_s": round(_cpu_seconds() - c0, 2),
                "transcribe_stage_s": round(rep.stage_seconds.get("transcribe", 0.0), 2),
                "transcribed": rep.transcribed,
            }
            print(f"{mode}: {rows[mode]}", flush=True)
    base = rows.get("never")
    if base and base["clips"]:
        for row in rows.values():
            n = row["clips"] or 1
            row["added_wall_s_per_clip"] = round((row["wall_s"] - base["wall_s"]) / n, 3)
            row["added_cpu_s_per_clip"] = round((row["cpu_s"] - base["cpu_s"]) / n, 3)
    print(f"machine: {machine}")
    for mode, row in rows.items():
        print(
            f"{mode:>6}: {row['clips']} clips, {row['wall_s']} s wall, {row['cpu_s']} s CPU, "
            f"transcribe stage {row['transcribe_stage_s']} s, {row['transcribed']} transcripts"
            + (
                f"; +{row['added_wall_s_per_clip']} s wall, +{row['added_cpu_s_per_clip']} s CPU "
                "per clip over never"
                if "added_wall_s_per_clip" in row
                else ""
            )
        )
    if args.json:
        print(json.dumps({"machine": machine, "modes": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
