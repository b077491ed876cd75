"""Training variants of one profile on one collection, scored on the val split (to choose by).

The frozen features are prepared once; each variant (aligner and training settings, joined with
``+``; ``:METHOD`` picks a baseline instead of SPANER) is trained on them and scored on ``val``
and ``test``. Choose on ``val``; ``test`` is printed for the record, never to choose by.

    .venv/bin/python studies/aligner_variants.py --manifest /tmp/tuxen/manifest.jsonl \\
        --profile offline base anchor_fixed anchor_fixed+augment anchor_fixed:linear_adapter
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from typing import Any

from machine import cpu_model

#: name -> (aligner settings, training settings)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {}),
    "anchor_fixed": ({"anchor_trainable": False}, {}),
    "anchor_trainable": ({"anchor_trainable": True}, {}),
    "drop.3": ({"dropout": 0.3}, {}),
    "wd.1": ({}, {"weight_decay": 0.1}),
    "lr1e-4": ({}, {"lr": 1e-4}),
    "w64d1": ({"width": 64, "depth": 1}, {}),
    "loss_both": ({}, {"loss": "both"}),
    "augment": ({}, {"augment": True}),
}
DIRECTIONS = ("image->text", "text->image", "audio->text", "image->audio")


def main() -> None:
    import torch

    from spaner.evaluation.compare import _variant, score_model
    from spaner.model.config import TrainConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache
    from spaner.training.fit import fit
    from spaner.training.manifest import load_manifest

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help=f"e.g. anchor_fixed+augment; from {list(VARIANTS)}")
    p.add_argument("--manifest", required=True)
    p.add_argument("--profile", default="offline")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"CPU: {cpu_model()}", flush=True)
    sp = Spaner.from_profile(args.profile)
    base = TrainConfig(shots=args.shots, seed=args.seed)
    data = sp.prepare(load_manifest(args.manifest), base, FeatureCache())
    for spec in args.variants:
        name, _, method = spec.partition(":")
        aligner: dict[str, Any] = {}
        train: dict[str, Any] = {}
        for part in name.split("+"):
            aligner.update(VARIANTS[part][0])
            train.update(VARIANTS[part][1])
        config = _variant(sp.model.config, method or "spaner")
        assert config is not None
        config.aligner = replace(config.aligner, **aligner)
        torch.manual_seed(args.seed)
        model = SpanerModel(config)
        t0 = time.perf_counter()
        fit(model, data.train, data.val, replace(base, **train), progress=False)
        out: dict[str, Any] = {"variant": spec, "train_s": round(time.perf_counter() - t0, 1)}
        for split, features in (("val", data.val), ("test", data.test)):
            retrieval = score_model(model, features)[0]
            out[split] = {
                d: (retrieval[d]["R@1"], retrieval[d]["R@10"]) for d in DIRECTIONS if d in retrieval
            }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
