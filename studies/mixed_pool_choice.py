"""Choose the training objective for a mixed pool, on the VALIDATION split (never test).

Trains each variant of the objective (``--variant NAME=loss:mixed,gap_weight:0.5,...``, keys
of :class:`spaner.model.config.TrainConfig`) for each seed on the digits benchmark and scores it on
the manifest's ``val`` split: per-direction R@1 (mean over the six directions) and, per query
modality, the mixed-pool P@10, its ratio to the per-direction P@10 and the modality-mix ratio.

    OMP_NUM_THREADS=1 SPANER_CACHE=/tmp/spcache .venv/bin/python studies/mixed_pool_choice.py \\
        --manifest /tmp/digits/manifest.jsonl --seeds 2 --variant pairs=loss:pairs \\
        --variant mixed=loss:mixed --json

Encoders are given explicitly (today's ``randconv-wide-image``, ``randconv-audio``,
``minilm-l6-text``, override with ``--encoder MODALITY=NAME``), so the figures do not move when a
profile changes. Early stopping also watches the val split, as in ``spaner eval``.
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

import numpy as np
import torch
from machine import cpu_model

ENCODERS = {"text": "minilm-l6-text", "image": "randconv-wide-image", "audio": "randconv-audio"}


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition("=")
    out: dict[str, Any] = {}
    for kv in filter(None, rest.split(",")):
        key, _, raw = kv.partition(":")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return name, out


def summarise(retrieval: dict[str, Any], mixed: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"R@1": float(np.mean([d["R@1"] for d in retrieval.values()]))}
    row["R@1_by_direction"] = {k: v["R@1"] for k, v in retrieval.items()}
    for q, m in mixed.items():
        row[q] = {
            "P@10": m["P@10"],
            "P@10_ratio": m["P@10"] / m["P@10_directions"] if m["P@10_directions"] else 0.0,
            "mix_ratio": m["mix_ratio"],
        }
    return row


def mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in rows[0].items():
        if isinstance(val, dict):
            out[key] = mean_rows([r[key] for r in rows])
        else:
            out[key] = round(float(np.mean([r[key] for r in rows])), 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--method", default="spaner", help="spaner, linear_adapter or separate_prompts")
    ap.add_argument("--variant", action="append", default=[], help="NAME=key:value,...")
    ap.add_argument("--encoder", action="append", default=[], metavar="MODALITY=NAME")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from spaner.evaluation.compare import _variant, score_model
    from spaner.model.config import TrainConfig
    from spaner.model.network import SpanerModel
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache
    from spaner.training.fit import fit
    from spaner.training.manifest import load_manifest

    encoders = dict(ENCODERS)
    encoders.update(dict(e.split("=", 1) for e in args.encoder))
    variants = [parse_variant(v) for v in args.variant] or [("mixed", {"loss": "mixed"})]
    sp = Spaner.from_profile("offline", encoders=encoders)
    manifest = load_manifest(args.manifest)
    cache = FeatureCache()
    results: dict[str, list[dict[str, Any]]] = {n: [] for n, _ in variants}
    seconds: dict[str, float] = {n: 0.0 for n, _ in variants}
    for seed in range(args.seeds):
        base = TrainConfig(shots=args.shots, seed=seed)
        data = sp.prepare(manifest, base, cache)
        for name, overrides in variants:
            cfg = replace(base, **overrides)
            cfg.validate()
            torch.manual_seed(seed)
            model = SpanerModel(_variant(sp.model.config, args.method))
            t0 = time.perf_counter()
            fit(model, data.train, data.val, cfg, progress=False)
            seconds[name] += time.perf_counter() - t0
            retrieval, _, _, mixed = score_model(model, data.val)  # raw cosine ranking
            results[name].append(summarise(retrieval, mixed))
            print(f"seed {seed} {name}: {json.dumps(results[name][-1])}", file=sys.stderr)
    table = {n: mean_rows(rows) for n, rows in results.items()}
    mods = sorted(k for k in next(iter(table.values())) if k not in ("R@1", "R@1_by_direction"))
    print(
        f"val split, {args.shots} shots, seeds 0-{args.seeds - 1}, method {args.method}, "
        f"CPU {cpu_model()}"
    )
    head = "| variant | settings | mean R@1 (6 directions) | " + " | ".join(
        f"{m}: P@10 / per-direction, mix ratio" for m in mods
    )
    print(head + " | train s/seed |")
    print("|---|---|---:|" + "---:|" * len(mods) + "---:|")
    for name, overrides in variants:
        t = table[name]
        cells = " | ".join(f"{t[m]['P@10_ratio']:.2f}, {t[m]['mix_ratio']:.2f}" for m in mods)
        print(
            f"| {name} | {overrides} | {t['R@1']:.3f} | {cells} | "
            f"{seconds[name] / args.seeds:.0f} |"
        )
    if args.json:
        print(json.dumps({"variants": dict(variants), "val": table, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
