"""How many augmented copies of each training image the ``digits`` profile trains with (val).

For each ``--copies`` value and seed, SPANER is trained few-shot (the profile's encoders and
aligner, default training settings, ``TrainConfig.image_augment`` = copies) on the digits'
``--modalities`` (text and images by default: the image side is what the copies change, and
leaving the audio out makes a run several times cheaper) and scored on the ``val`` split, which
chooses; ``--test`` also prints the test split for the record.

    .venv/bin/python studies/digits_image_augment.py --manifest /tmp/digits/manifest.jsonl \\
        --copies 0,8 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from machine import cpu_model


def main() -> None:
    import torch

    from spaner.evaluation.compare import score_model
    from spaner.model.config import TrainConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache
    from spaner.training.fit import fit
    from spaner.training.manifest import load_manifest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="/tmp/digits/manifest.jsonl")
    p.add_argument("--profile", default="digits")
    p.add_argument("--modalities", default="text,image")
    p.add_argument("--copies", default="0,8", help="comma-separated image_augment values")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--test", action="store_true", help="also score the test split (record only)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps({"cpu": cpu_model()}), flush=True)
    mods = args.modalities.split(",")
    manifest = load_manifest(args.manifest)
    sp = Spaner.from_profile(args.profile, modalities=mods)
    splits = ["val", "test"] if args.test else ["val"]
    for copies in [int(c) for c in args.copies.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            cfg = TrainConfig(shots=args.shots, seed=seed, image_augment=copies)
            data = sp.prepare(manifest, cfg, FeatureCache(), modalities=mods)
            torch.manual_seed(seed)
            model = SpanerModel(sp.model.config)
            t0 = time.perf_counter()
            fit(model, data.train, data.val, cfg, progress=False)
            out = {"copies": copies, "seed": seed, "train_s": round(time.perf_counter() - t0)}
            for split in splits:
                scores = score_model(model, getattr(data, split))[0]
                out[split] = {d: v["R@1"] for d, v in scores.items()}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
