"""Choosing the offline image and audio encoders by measurement (digits benchmark).

For each candidate configuration of the fixed (never trained) encoders, a logistic regression
is fitted on the few-shot training items' features (segment-mean pooled, as the linear
baseline pools them) and scored on the held-out test items (test images, test voices): how
much digit identity the frozen features carry when only K examples per digit are seen.
Candidates: raw pixel patches vs random conv nets of several widths/depths for images;
log-mel variants (mel bins, frame stacking) and the random-conv audio encoder for audio.
Candidates are chosen on the ``val`` split (its own held-out voices); ``test`` is reported.

    .venv/bin/python studies/digits_encoder_choice.py --manifest /tmp/digits/manifest.jsonl [--json]
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
    "randconv-audio: trim 25 dB, 32 frames, conv [32,64] (default)": {"encoder": "randconv-audio"},
    "randconv-audio, trim 35 dB": {"encoder": "randconv-audio", "trim_db": 35.0},
    "randconv-audio, no trimming (trim_db 1000)": {"encoder": "randconv-audio", "trim_db": 1000.0},
    "randconv-audio, 24 frames": {"encoder": "randconv-audio", "frames": 24},
    "randconv-audio, 48 frames": {"encoder": "randconv-audio", "frames": 48},
    "randconv-audio, trim 20 dB": {"encoder": "randconv-audio", "trim_db": 20.0},
    "randconv-audio, trim 15 dB": {"encoder": "randconv-audio", "trim_db": 15.0},
    "randconv-audio, conv [64,128]": {"encoder": "randconv-audio", "channels": [64, 128]},
    "randconv-audio, conv [32,64,128]": {"encoder": "randconv-audio", "channels": [32, 64, 128]},
    "randconv-audio, conv seed 1": {"encoder": "randconv-audio", "seed": 1},
    "log-mel 40, stack 3 (logmel-audio, the previous default)": {
        "encoder": "logmel-audio",
        "n_mels": 40,
        "stack": 3,
    },
    "log-mel 40, stack 1": {"encoder": "logmel-audio", "n_mels": 40, "stack": 1},
    "log-mel 40, stack 5": {"encoder": "logmel-audio", "n_mels": 40, "stack": 5},
    "log-mel 64, stack 3": {"encoder": "logmel-audio", "n_mels": 64, "stack": 3},
    "log-mel 24, stack 3": {"encoder": "logmel-audio", "n_mels": 24, "stack": 3},
}


def _pool(items: list[Any], segments: int = 4) -> np.ndarray:
    from spaner.encoders.base import TokenBatch

    from spaner.model.network import segment_means

    b = TokenBatch.collate(items)
    return segment_means(b.tokens, b.mask, segments).numpy()


def score(
    modality: str, options: dict[str, Any], manifest: Any, shots: int, seeds: int, cache: Any
) -> dict[str, float]:
    """Mean probe accuracy over ``seeds`` on the ``val`` split (held-out voices / images, used to
    choose) and on the ``test`` split (reported, not used to choose)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner

    options = dict(options)
    patch = options.pop("patch", None)
    encoder = options.pop("encoder", None)
    sp = Spaner.from_profile(
        "offline",
        modalities=[modality, "text"],
        encoders={modality: encoder} if encoder else None,
        options={modality: options} if not patch else {},
    )
    if patch:  # raw pixels: the 32x32 image cut into patch x patch tiles, one token each
        enc = sp.encoders[modality]
        import torch.nn.functional as F

        def forward(batch: torch.Tensor, _enc=enc):
            from spaner.encoders.base import TokenBatch

            tiles = F.unfold(batch, patch, stride=patch).transpose(1, 2).contiguous()
            return TokenBatch(tiles, torch.ones(tiles.shape[:2], dtype=torch.bool), None)

        enc._forward = forward
        enc._args = {**enc._args, "raw_patches": patch}
    accs: dict[str, list[float]] = {"val": [], "test": []}
    for seed in range(seeds):
        data = sp.prepare(manifest, TrainConfig(shots=shots, seed=seed, audio_augment=0), cache)
        tr = data.train.modalities[modality]
        xs = StandardScaler().fit(_pool(tr.items))
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(
            xs.transform(_pool(tr.items)), tr.labels.numpy()
        )
        for split, fs in (("val", data.val), ("test", data.test)):
            te = fs.modalities[modality]
            accs[split].append(
                float((clf.predict(xs.transform(_pool(te.items))) == te.labels.numpy()).mean())
            )
    return {k: round(float(np.mean(v)), 4) for k, v in accs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", choices=["image", "audio"], help="probe one modality")
    args = p.parse_args(argv)
    from spaner.training.features import FeatureCache
    from spaner.training.manifest import load_manifest

    manifest, cache = load_manifest(args.manifest), FeatureCache()
    report: dict[str, Any] = {
        "shots": args.shots,
        "seeds": list(range(args.seeds)),
        "image": {},
        "audio": {},
    }
    for modality, cands in (("image", IMAGE), ("audio", AUDIO)):
        if args.only and modality != args.only:
            continue
        for name, opts in cands.items():
            report[modality][name] = score(modality, opts, manifest, args.shots, args.seeds, cache)
            print(f"{modality}: {name}: {report[modality][name]}", file=sys.stderr, flush=True)
    print(
        f"Frozen-feature probe: logistic regression on {args.shots} shots/digit, accuracy, seeds {report['seeds']}"
    )
    print(
        "| modality | encoder configuration | val accuracy (chooses) | test accuracy |\n|---|---|---:|---:|"
    )
    for modality in ("image", "audio"):
        for name, acc in report[modality].items():
            print(f"| {modality} | {name} | {acc['val']:.3f} | {acc['test']:.3f} |")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
