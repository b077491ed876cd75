"""Choosing the offline image and audio encoders by measurement (digits benchmark).

For each candidate configuration of the fixed (never trained) encoders, a logistic regression
is fitted on the few-shot training items' features (segment-mean pooled, as the linear
baseline pools them) and scored on the held-out test items (test images, test voices): how
much digit identity the frozen features carry when only K examples per digit are seen.
Candidates: raw pixel patches vs random conv nets of several widths/depths for images;
log-mel variants (mel bins, frame stacking) for audio.

    .venv/bin/python benchmarks/digits_encoder_choice.py --manifest /tmp/digits/manifest.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE = {
    "raw 4x4 patches (conv channels=[] )": {"channels": [], "size": 32, "patch": 4},
    "randconv [32,64] (current)": {"channels": [32, 64]},
    "randconv [64,128]": {"channels": [64, 128]},
    "randconv [128,256]": {"channels": [128, 256]},
    "randconv [32,64,128] (4x4 grid)": {"channels": [32, 64, 128]},
}
AUDIO = {
    "log-mel 40, stack 3 (current)": {"n_mels": 40, "stack": 3},
    "log-mel 40, stack 1": {"n_mels": 40, "stack": 1},
    "log-mel 40, stack 5": {"n_mels": 40, "stack": 5},
    "log-mel 64, stack 3": {"n_mels": 64, "stack": 3},
    "log-mel 24, stack 3": {"n_mels": 24, "stack": 3},
}


def _pool(items: list[Any], segments: int = 4) -> np.ndarray:
    from spaner.encoders.base import TokenBatch
    from spaner.model import segment_means

    b = TokenBatch.collate(items)
    return segment_means(b.tokens, b.mask, segments).numpy()



def score(modality: str, options: dict[str, Any], manifest: Any, shots: int, seeds: int, cache: Any) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from spaner.config import TrainConfig
    from spaner.pipeline import Spaner

    options = dict(options)
    patch = options.pop("patch", None)
    sp = Spaner.from_profile("offline", modalities=[modality, "text"], options={modality: options} if not patch else {})
    if patch:  # raw pixels: the 32x32 image cut into patch x patch tiles, one token each
        enc = sp.encoders[modality]
        import torch.nn.functional as F

        def forward(batch: torch.Tensor, _enc=enc):
            from spaner.encoders.base import TokenBatch

            tiles = F.unfold(batch, patch, stride=patch).transpose(1, 2).contiguous()
            return TokenBatch(tiles, torch.ones(tiles.shape[:2], dtype=torch.bool), None)

        enc._forward = forward
        enc._args = {**enc._args, "raw_patches": patch}
    accs = []
    for seed in range(seeds):
        data = sp.prepare(manifest, TrainConfig(shots=shots, seed=seed), cache)
        tr, te = data.train.modalities[modality], data.test.modalities[modality]
        xs = StandardScaler().fit(_pool(tr.items))
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(xs.transform(_pool(tr.items)), tr.labels.numpy())
        accs.append(float((clf.predict(xs.transform(_pool(te.items))) == te.labels.numpy()).mean()))
    return round(float(np.mean(accs)), 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from spaner.features import FeatureCache
    from spaner.manifest import load_manifest

    manifest, cache = load_manifest(args.manifest), FeatureCache()
    report: dict[str, Any] = {"shots": args.shots, "seeds": list(range(args.seeds)), "image": {}, "audio": {}}
    for modality, cands in (("image", IMAGE), ("audio", AUDIO)):
        for name, opts in cands.items():
            report[modality][name] = score(modality, opts, manifest, args.shots, args.seeds, cache)
            print(f"{modality}: {name}: {report[modality][name]:.3f}", file=sys.stderr, flush=True)
    print(f"Frozen-feature probe: logistic regression on {args.shots} shots/digit, test accuracy, seeds {report['seeds']}")
    print("| modality | encoder configuration | test accuracy |\n|---|---|---:|")
    for modality in ("image", "audio"):
        for name, acc in report[modality].items():
            print(f"| {modality} | {name} | {acc:.3f} |")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
