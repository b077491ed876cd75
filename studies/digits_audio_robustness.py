"""Audio robustness on the digits benchmark: held-out voices, clean and over a telephone line.

Trains SPANER (offline profile) with and without training-time audio augmentation
(``--audio-augment K`` copies per clip: speed/pitch, telephone band, reverberation, noise;
see ``spaner.training.augment``) on the same few-shot samples, and scores audio retrieval on the
held-out test voices twice: the original clips, and a telephone-band copy of them
(resampled to 8 kHz, 300-3400 Hz, back to 16 kHz). Nothing of the test set is trained on.

    .venv/bin/python studies/digits_audio_robustness.py --manifest /tmp/digits/manifest.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIRS = ("audio->text", "text->audio", "audio->image", "image->audio")


def telephone_copy(test: Any, encoder: Any, paths: list[str]) -> Any:
    """``test`` with its audio features replaced by those of telephone-band copies of the clips."""
    from spaner.training.augment import telephone_band
    from spaner.training.data import FeatureSet, ModalityFeatures

    items = []
    for path in paths:
        wave = encoder.load(path)
        items.append(
            encoder.forward(
                encoder.preprocess([telephone_band(wave, encoder.sample_rate)])
            ).split()[0]
        )
    audio = test.modalities["audio"]
    mods = dict(test.modalities)
    mods["audio"] = ModalityFeatures(items, audio.labels, audio.ids, audio.concepts)
    return FeatureSet(mods, test.relevance)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument(
        "--audio-augment", default="0,4", help="comma-separated copies per clip to compare"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from spaner.evaluation.compare import evaluate_model
    from spaner.model.config import TrainConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache
    from spaner.training.fit import fit
    from spaner.training.manifest import load_manifest

    cache = FeatureCache()
    manifest = load_manifest(args.manifest)
    sp = Spaner.from_profile("offline")
    enc = sp.encoders["audio"]
    report: dict[str, Any] = {"shots": args.shots, "seeds": list(range(args.seeds)), "runs": {}}
    tel_cache: dict[int, Any] = {}
    for copies in [int(c) for c in args.audio_augment.split(",")]:
        rows: dict[str, list[dict]] = {"clean": [], "telephone": []}
        for seed in range(args.seeds):
            cfg = TrainConfig(shots=args.shots, seed=seed, audio_augment=copies)
            data = sp.prepare(manifest, cfg, cache)
            if seed not in tel_cache:
                ids = set(data.test.modalities["audio"].ids)
                paths = {
                    i.id: i.fields["audio"]
                    for i in data.splits.test
                    if "audio" in i.fields and i.id in ids
                }
                tel_cache[seed] = telephone_copy(
                    data.test, enc, [paths[i] for i in data.test.modalities["audio"].ids]
                )
            torch.manual_seed(seed)
            model = SpanerModel(replace(sp.model.config))
            fit(model, data.train, data.val, cfg, progress=False)
            rows["clean"].append(evaluate_model(model, data.test)[0])
            rows["telephone"].append(evaluate_model(model, tel_cache[seed])[0])
            print(f"audio_augment={copies} seed={seed} done", file=sys.stderr, flush=True)
        report["runs"][str(copies)] = {
            cond: {
                d: round(float(np.mean([r[d]["R@1"] for r in rs])), 4)
                for d in (*DIRS, "image->text", "text->image")
            }
            for cond, rs in rows.items()
        }
    print(f"Audio robustness: {args.shots} shots, seeds {report['seeds']}, R@1 on held-out voices")
    print("| audio_augment | test audio | " + " | ".join(DIRS) + " | image->text |")
    print("|---:|---|" + "---:|" * (len(DIRS) + 1))
    for copies, conds in report["runs"].items():
        for cond, m in conds.items():
            print(
                f"| {copies} | {cond} | "
                + " | ".join(f"{m[d]:.3f}" for d in DIRS)
                + f" | {m['image->text']:.3f} |"
            )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
