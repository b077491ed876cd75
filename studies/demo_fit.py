"""How well the demo's model finds the collection it adapted on, per training setting.

The demo searches the very collection it trains on, so what a user sees is the fit: typing a
concept's name (``frog``), does that stamp's own photo / recorded sound come first among all
photos / all clips (sounds and spoken descriptions)? For each training setting given (JSON
``TrainConfig`` fields over the demo's defaults), trains on the demo's training manifest from its
feature cache (run ``make demo`` or ``spaner demo`` once first) and prints, per setting: training
seconds, R@1 / R@10 / median rank of the own photo and own sound, the frog's croak's rank for
``frog``, and the validation recall of the best validated epoch.

    .venv/bin/python studies/demo_fit.py --workdir .spaner-demo \\
        '{"epochs": 40, "keep": "best", "val_every": 2, "patience": 10, "batch_size": 256, \\
          "audio_augment": 4}' '{}'

(The demo validates only at its last epoch; a setting that keeps the best epoch says how often.)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import cpu_model

log = logging.getLogger("demo_fit")


def _own_rank(sp: Any, items: list[dict], vectors: np.ndarray, kind: str) -> dict[str, float]:
    """Typed concept name -> rank of that concept's first item of ``kind`` among ``items``."""
    concepts = sorted({r["concept"] for r in items if r["meta"].get("kind") == kind})
    scores = sp.embed("text", concepts) @ vectors.T
    ranks = []
    for ci, concept in enumerate(concepts):
        order = np.argsort(-scores[ci])
        own = [
            k
            for k, j in enumerate(order)
            if items[j]["concept"] == concept and items[j]["meta"].get("kind") == kind
        ]
        ranks.append(own[0] + 1)
    r = np.array(ranks)
    return {
        "n": len(r),
        "R@1": round(float((r == 1).mean()), 3),
        "R@10": round(float((r <= 10).mean()), 3),
        "median": float(np.median(r)),
    }


def run(workdir: Path, setting: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch

    from spaner.demo import TRAIN
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache

    data = workdir / "tuxpaint"
    sp = Spaner.from_profile("offline")
    tcfg = TrainConfig(shots=5, seed=0, **{**TRAIN["tuxpaint"], **setting})
    prepared = sp.prepare(data / "demo-train.jsonl", tcfg, FeatureCache(workdir / "cache"))
    torch.set_num_threads(threads)
    t = time.perf_counter()
    result = sp.fit(prepared, tcfg, progress=False)
    seconds = time.perf_counter() - t
    rows = [json.loads(line) for line in (data / "manifest.jsonl").open(encoding="utf-8")]
    clips = [r for r in rows if "audio" in r]
    photos = [r for r in rows if "image" in r]
    audio = sp.embed("audio", [str(data / r["audio"]) for r in clips])
    image = sp.embed("image", [str(data / r["image"]) for r in photos])
    croak = next(
        k for k, r in enumerate(clips) if r["concept"] == "frog" and r["meta"]["kind"] == "sound"
    )
    order = list(np.argsort(-(sp.embed("text", ["frog"]) @ audio.T)[0]))
    best = result.best_epoch
    return {
        "setting": setting,
        "train_seconds": round(seconds, 1),
        "epochs_run": result.epochs_run,
        "best_val_epoch": best,
        "val_recall_at_best": result.val_recall[best - 1] if best else None,
        "photo": _own_rank(sp, photos, image, "photo"),
        "sound": _own_rank(sp, clips, audio, "sound"),
        "frog_croak_rank": int(order.index(croak) + 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("settings", nargs="*", default=["{}"], help="JSON TrainConfig fields")
    ap.add_argument("--workdir", type=Path, default=Path(".spaner-demo"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = [run(args.workdir, json.loads(s), args.threads) for s in args.settings]
    if args.json:
        print(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=2))
        return
    print(f"CPU: {cpu_model()}")
    print("| setting | train s | photo R@1 / R@10 | sound R@1 / R@10 | croak rank |")
    print("|---|---|---|---|---|")
    for r in rows:
        p, s = r["photo"], r["sound"]
        print(
            f"| `{json.dumps(r['setting'])}` | {r['train_seconds']} | {p['R@1']} / {p['R@10']} "
            f"| {s['R@1']} / {s['R@10']} | {r['frog_croak_rank']} |"
        )


if __name__ == "__main__":
    main()
