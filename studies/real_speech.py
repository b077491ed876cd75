"""Real human speech of digits, with a model adapted on synthetic eSpeak speech only.

Trains SPANER (the ``digits`` profile, each audio encoder given) few-shot on the digits
benchmark, then queries with people saying the digits in Tux Paint (``spoken-digits.jsonl`` of
``spaner datasets tuxpaint``; never used for training). Reports audio->text and audio->image R@1
for the English recordings and for every other language, beside the digits' own held-out test
split, per audio encoder, over seeds.

    .venv/bin/spaner datasets digits --out /tmp/digits
    .venv/bin/spaner datasets tuxpaint --out /tmp/tuxpaint
    .venv/bin/python studies/real_speech.py --digits /tmp/digits/manifest.jsonl \\
        --spoken /tmp/tuxpaint/spoken-digits.jsonl [--audio whisper-tiny-en-audio,randconv-audio] \\
        [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model

log = logging.getLogger("real_speech")


def _r1(q: np.ndarray, pool: np.ndarray, qc: list[str], pc: list[str]) -> float:
    if len(q) == 0:
        return float("nan")
    best = np.argmax(q @ pool.T, axis=1)
    return float(np.mean([pc[b] == c for b, c in zip(best, qc, strict=True)]))


def run_one(
    digits: Path, spoken: Path, audio: str, seed: int, shots: int, epochs: int | None
) -> dict:
    from spaner.evaluation.compare import evaluate_model
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache

    sp = Spaner.from_profile("digits", encoders={"audio": audio})
    extra = {"epochs": epochs} if epochs else {}
    cfg = TrainConfig(shots=shots, seed=seed, **extra)
    t0 = time.perf_counter()
    prepared = sp.prepare(digits, cfg, FeatureCache())
    sp.fit(prepared, cfg, progress=False)
    train_s = time.perf_counter() - t0
    retrieval, _ = evaluate_model(sp.model, prepared.test)
    rows = [json.loads(x) for x in digits.read_text().splitlines() if x.strip()]
    texts = [r for r in rows if "text" in r and r.get("split") == "test"]
    images = [r for r in rows if "image" in r and r.get("split") == "test"]
    tv = sp.embed("text", [r["text"] for r in texts])
    iv = sp.embed("image", [str(digits.parent / r["image"]) for r in images])
    clips = [json.loads(x) for x in spoken.read_text().splitlines() if x.strip()]
    t1 = time.perf_counter()
    av = sp.embed("audio", [str(spoken.parent / c["audio"]) for c in clips])
    enc_s = time.perf_counter() - t1
    out = {
        "digits_test": {
            d: retrieval[d]["R@1"]
            for d in ("audio->text", "audio->image", "text->image", "image->audio")
        },
        "train_seconds": train_s,
        "clips_per_second": len(clips) / max(enc_s, 1e-9),
    }
    for group, keep in (("english", True), ("other languages", False)):
        idx = [i for i, c in enumerate(clips) if c["meta"]["english"] == keep]
        qc = [clips[i]["concept"] for i in idx]
        out[group] = {
            "n": len(idx),
            "audio->text": _r1(av[idx], tv, qc, [r["concept"] for r in texts]),
            "audio->image": _r1(av[idx], iv, qc, [r["concept"] for r in images]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--digits", type=Path, required=True)
    ap.add_argument("--spoken", type=Path, required=True)
    ap.add_argument("--audio", default="whisper-tiny-en-audio,randconv-audio")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report: dict = {"cpu": cpu_model(), "shots": args.shots, "seeds": args.seeds, "encoders": {}}
    for audio in args.audio.split(","):
        runs = [
            run_one(args.digits, args.spoken, audio, s, args.shots, args.epochs)
            for s in range(args.seeds)
        ]

        def mean(path: tuple[str, str], runs=runs) -> float:
            return float(np.mean([r[path[0]][path[1]] for r in runs]))

        report["encoders"][audio] = {
            "digits_test": {d: mean(("digits_test", d)) for d in runs[0]["digits_test"]},
            "english": {k: mean(("english", k)) for k in ("audio->text", "audio->image")}
            | {"n": runs[0]["english"]["n"]},
            "other languages": {
                k: mean(("other languages", k)) for k in ("audio->text", "audio->image")
            }
            | {"n": runs[0]["other languages"]["n"]},
            "clips_per_second": float(np.mean([r["clips_per_second"] for r in runs])),
            "runs": runs,
        }
    print(f"CPU: {report['cpu']}; {args.shots} shots, {args.seeds} seeds (mean R@1)")
    print(
        "| audio encoder | digits test a->t | a->i | t->i | i->a | real English a->t (n) | a->i | other languages a->t (n) | a->i | clips/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in report["encoders"].items():
        d, e, o = r["digits_test"], r["english"], r["other languages"]
        print(
            f"| {name} | {d['audio->text']:.3f} | {d['audio->image']:.3f} | {d['text->image']:.3f} | {d['image->audio']:.3f} "
            f"| {e['audio->text']:.3f} ({e['n']}) | {e['audio->image']:.3f} | {o['audio->text']:.3f} ({o['n']}) | {o['audio->image']:.3f} "
            f"| {r['clips_per_second']:.1f} |"
        )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
