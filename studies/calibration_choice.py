"""Choose the search-time score calibration for a mixed pool, on the VALIDATION split.

Trains SPANER (``--loss``, default ``pairs``) once per seed on the digits benchmark, fits every
calibration variant (:mod:`spaner.search.calibration`: ``platt``, ``zpos``, ``zscore``, ``isotonic``)
on the ``val`` split's embeddings, and scores the mixed pool ranked by each variant's calibrated
score, against the raw cosine and against modality-centroid subtraction (each modality's val
centroid subtracted before the cosine; not monotone per pair, so its per-direction R@1 moves).
The choice is made on val; the same fits are scored on test for the report.

    OMP_NUM_THREADS=1 SPANER_CACHE=/tmp/spcache .venv/bin/python studies/calibration_choice.py \\
        --manifest /tmp/digits/manifest.jsonl --seeds 3 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from machine import cpu_model
from mixed_pool_choice import mean_rows, summarise

ENCODERS = {"text": "minilm-l6-text", "image": "randconv-wide-image", "audio": "randconv-audio"}


def centred(
    embs: dict[str, torch.Tensor], centroids: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {m: F.normalize(z - centroids[m], dim=1) for m, z in embs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--loss", default="pairs")
    ap.add_argument("--method", default="spaner", help="spaner, linear_adapter or separate_prompts")
    ap.add_argument("--encoder", action="append", default=[], metavar="MODALITY=NAME")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--dump", type=Path, default=None, help="save each seed's val/test embeddings here"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from spaner.evaluation.compare import _embed, _variant
    from spaner.evaluation.metrics import mixed_pool_metrics, retrieval_metrics
    from spaner.model.config import TrainConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import Spaner
    from spaner.search.calibration import METHODS, fit_calibration
    from spaner.training.features import FeatureCache
    from spaner.training.fit import fit
    from spaner.training.manifest import load_manifest

    encoders = dict(ENCODERS)
    encoders.update(dict(e.split("=", 1) for e in args.encoder))
    sp = Spaner.from_profile("offline", encoders=encoders)
    manifest = load_manifest(args.manifest)
    cache = FeatureCache()
    variants = ["raw", *METHODS, "centroid"]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {v: [] for v in variants} for s in ("val", "test")
    }
    seconds = 0.0
    for seed in range(args.seeds):
        cfg = replace(TrainConfig(shots=args.shots, seed=seed), loss=args.loss)
        data = sp.prepare(manifest, cfg, cache)
        torch.manual_seed(seed)
        model = SpanerModel(_variant(sp.model.config, args.method))
        t0 = time.perf_counter()
        fit(model, data.train, data.val, cfg, progress=False)
        seconds += time.perf_counter() - t0
        val_embs, test_embs = _embed(model, data.val), _embed(model, data.test)
        labels = {m: f.labels for m, f in data.val.modalities.items()}
        if args.dump is not None:
            from safetensors.torch import save_file

            args.dump.mkdir(parents=True, exist_ok=True)
            for split, embs, fs in (("val", val_embs, data.val), ("test", test_embs, data.test)):
                tensors = {f"emb.{m}": z.contiguous() for m, z in embs.items()}
                tensors.update({f"lab.{m}": f.labels for m, f in fs.modalities.items()})
                save_file(tensors, str(args.dump / f"seed{seed}_{split}.safetensors"))
        cals = {m: fit_calibration(val_embs, labels, m) for m in METHODS}
        centroids = {m: z.mean(0) for m, z in val_embs.items()}
        for split, embs, fs in (("val", val_embs, data.val), ("test", test_embs, data.test)):
            retrieval = retrieval_metrics(embs, fs, ks=(1,))
            results[split]["raw"].append(summarise(retrieval, mixed_pool_metrics(embs, fs)))
            for m, cal in cals.items():
                mixed = mixed_pool_metrics(embs, fs, calibration=cal)
                results[split][m].append(summarise(retrieval, mixed))
            cz = centred(embs, centroids)
            results[split]["centroid"].append(
                summarise(retrieval_metrics(cz, fs, ks=(1,)), mixed_pool_metrics(cz, fs))
            )
        print(
            f"seed {seed}: "
            + json.dumps({v: results["val"][v][-1] for v in variants}, separators=(",", ":")),
            file=sys.stderr,
        )
    tables = {s: {v: mean_rows(rows) for v, rows in r.items()} for s, r in results.items()}
    mods = sorted(k for k in tables["val"]["raw"] if not k.startswith("R@1"))
    print(
        f"{args.shots} shots, seeds 0-{args.seeds - 1}, method {args.method}, loss {args.loss}, "
        f"train {seconds / args.seeds:.0f} s/seed, CPU {cpu_model()}"
    )
    for split in ("val", "test"):
        print(f"\n{split}: mean R@1 (6 directions) | per query modality: P@10 / per-direction, mix")
        print("| ranking | mean R@1 | " + " | ".join(mods) + " |")
        print("|---|---:|" + "---:|" * len(mods))
        for v in variants:
            t = tables[split][v]
            cells = " | ".join(f"{t[m]['P@10_ratio']:.2f}, {t[m]['mix_ratio']:.2f}" for m in mods)
            print(f"| {v} | {t['R@1']:.3f} | {cells} |")
    if args.json:
        print(json.dumps({"tables": tables, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
