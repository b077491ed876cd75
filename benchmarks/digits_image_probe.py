"""Which image encoder serves the 8x8 digits: EfficientNet-Lite0 (ImageNet) or the random conv net?

A logistic regression on each encoder's mean-pooled frozen tokens (standardised on the training
split), fitted on K training images per digit (seeded draws) and scored on the ``val`` and
``test`` images. Decides whether the demo can serve the digits beside the Tux Paint photos with
one image encoder (the ``offline`` profile's EfficientNet) or needs the ``digits`` profile.

    .venv/bin/python benchmarks/digits_image_probe.py --manifest /tmp/digits/manifest.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from machine import cpu_model

ENCODERS = {
    "efficientnet-lite0-image": {"labels": "none"},
    "randconv-wide-image": {},
}

log = logging.getLogger("digits_image_probe")


def _features(name: str, options: dict, paths: list[str]) -> np.ndarray:
    from spaner.encoders import build_encoder

    enc = build_encoder(name, **options)
    out = []
    for start in range(0, len(paths), 64):
        out.append(enc.encode(paths[start : start + 64]).tokens.mean(1).numpy())
    return np.concatenate(out)


def probe(manifest: Path, shots: int, seeds: int) -> dict[str, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression

    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    images = [r for r in rows if "image" in r]
    y = np.array([r["concept"] for r in images])
    split = np.array([r["split"] for r in images])
    paths = [str(manifest.parent / r["image"]) for r in images]
    report: dict[str, dict[str, float]] = {}
    for name, options in ENCODERS.items():
        x = _features(name, options, paths)
        train = split == "train"
        x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
        scores: dict[str, list[float]] = {"val": [], "test": []}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            pick = [
                int(i)
                for c in sorted(set(y))
                for i in rng.choice(np.where((y == c) & train)[0], shots, replace=False)
            ]
            clf = LogisticRegression(max_iter=2000).fit(x[pick], y[pick])
            for s in scores:
                scores[s].append(float(clf.score(x[split == s], y[split == s])))
        report[name] = {s: round(float(np.mean(v)), 3) for s, v in scores.items()}
        log.info("%s: %s", name, report[name])
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = probe(args.manifest, args.shots, args.seeds)
    if args.json:
        print(json.dumps({"cpu": cpu_model(), "shots": args.shots, "probe": report}, indent=2))
        return
    print(f"CPU: {cpu_model()}; {args.shots} shots, {args.seeds} seeds")
    print("| image encoder | val accuracy | test accuracy |\n|---|---:|---:|")
    for name, r in report.items():
        print(f"| `{name}` | {r['val']:.3f} | {r['test']:.3f} |")


if __name__ == "__main__":
    main()
