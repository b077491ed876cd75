"""The extension experiment on the digits benchmark: does the shared prompt give emergent alignment?

1. Train SPANER on image + text only (the manifest's image and text lines).
2. Extend it with audio (the offline profile's audio encoder, ``randconv-audio``), training only
   the audio aligner on audio and text lines (no audio-image pairs ever), exactly what ``spaner
   extend --modality audio --encoder randconv-audio --manifest AUDIO_TEXT.jsonl`` does.
3. Score on the held-out test split: audio<->text (trained), image<->text (must be
   bit-identical before and after the extension), and audio<->image, a pair never trained
   together. Repeated with separate per-modality prompts, where the audio aligner gets its
   own prompt instead of the frozen shared one.

    .venv/bin/python studies/digits_extension.py --manifest /tmp/digits/manifest.jsonl [--seeds 3] [--json]

The digits manifest is concept-grouped, one modality per line, so the two training manifests
are plain line filters of it. The last line with ``--json`` is one JSON object.
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

DIRECTIONS = (
    "text->image",
    "image->text",
    "audio->text",
    "text->audio",
    "audio->image",
    "image->audio",
)


def filter_manifest(src: Path, dst: Path, modalities: set[str]) -> int:
    """Copy the lines of ``src`` whose media fields are all in ``modalities``; returns the line count."""
    kept = 0
    with open(src) as fin, open(dst, "w") as fout:
        for line in fin:
            if not line.strip():
                continue
            row = json.loads(line)
            media = {k for k in ("text", "image", "audio") if k in row}
            if media and media <= modalities:
                fout.write(line if line.endswith("\n") else line + "\n")
                kept += 1
    return kept


def run_once(
    manifest: Path,
    it_manifest: Path,
    at_manifest: Path,
    prompt_mode: str,
    seed: int,
    shots: int,
    cache: Any,
    lr: float | None = None,
) -> dict[str, Any]:
    from spaner.evaluation.compare import evaluate_model
    from spaner.model.config import TrainConfig
    from spaner.model.embedding import embed_items
    from spaner.pipeline import Spaner
    from spaner.training.manifest import load_manifest

    cfg = TrainConfig(shots=shots, seed=seed)
    if lr is not None:
        cfg = replace(cfg, lr=lr)
    sp = Spaner.from_profile(
        "offline", modalities=["text", "image"], aligner={"prompt_mode": prompt_mode}
    )
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    sp.fit(load_manifest(it_manifest), cfg, cache, progress=False)
    t_base = time.perf_counter() - t0
    full = sp.prepare(load_manifest(manifest), cfg, cache)  # test features for text + image
    before = {m: embed_items(sp.model, m, full.test.modalities[m].items) for m in ("text", "image")}
    it_metrics, _ = evaluate_model(sp.model, full.test)
    t0 = time.perf_counter()
    from spaner.profiles import get_profile

    audio_encoder = get_profile("offline").encoders["audio"]
    sp.extend(
        "audio",
        load_manifest(at_manifest),
        replace(cfg),
        encoder=audio_encoder,
        cache=cache,
        progress=False,
    )
    t_ext = time.perf_counter() - t0
    full = sp.prepare(load_manifest(manifest), cfg, cache)  # now with audio
    after = {m: embed_items(sp.model, m, full.test.modalities[m].items) for m in ("text", "image")}
    metrics, coherence = evaluate_model(sp.model, full.test)
    return {
        "metrics": metrics,
        "coherence": coherence,
        "image_text_before": {d: it_metrics[d] for d in ("text->image", "image->text")},
        "image_text_bit_identical": all(torch.equal(before[m], after[m]) for m in before),
        "seconds": {"image_text_fit": round(t_base, 1), "audio_extend": round(t_ext, 1)},
    }


def _mean(values: list[float]) -> float:
    return round(float(np.mean(values)), 4)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: TrainConfig's)")
    p.add_argument("--modes", default="shared,separate", help="prompt modes to compare")
    p.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from spaner.training.features import FeatureCache

    cache = FeatureCache()
    report: dict[str, Any] = {
        "shots": args.shots,
        "seeds": list(range(args.seeds)),
        "lr": args.lr,
        "modes": {},
    }
    # the filtered manifests live next to the original so its relative media paths stay valid
    it_man = args.manifest.parent / ".extension_image_text.jsonl"
    at_man = args.manifest.parent / ".extension_audio_text.jsonl"
    try:
        report["lines"] = {
            "image_text": filter_manifest(args.manifest, it_man, {"image", "text"}),
            "audio_text": filter_manifest(args.manifest, at_man, {"audio", "text"}),
        }
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            runs = [
                run_once(args.manifest, it_man, at_man, mode, s, args.shots, cache, args.lr)
                for s in range(args.seeds)
            ]
            report["modes"][mode] = {
                "R@1": {d: _mean([r["metrics"][d]["R@1"] for r in runs]) for d in DIRECTIONS},
                "mAP@10": {d: _mean([r["metrics"][d]["mAP@10"] for r in runs]) for d in DIRECTIONS},
                "R@1_per_seed": {
                    d: [r["metrics"][d]["R@1"] for r in runs]
                    for d in ("audio->image", "image->audio")
                },
                "image_text_R@1_before": {
                    d: _mean([r["image_text_before"][d]["R@1"] for r in runs])
                    for d in ("text->image", "image->text")
                },
                "image_text_bit_identical": all(r["image_text_bit_identical"] for r in runs),
                "modality_gap": _mean([r["coherence"]["modality_gap"] for r in runs]),
                "seconds": {k: _mean([r["seconds"][k] for r in runs]) for k in runs[0]["seconds"]},
            }
            print(f"{mode}: done", file=sys.stderr, flush=True)
    finally:
        it_man.unlink(missing_ok=True)
        at_man.unlink(missing_ok=True)
    modes = list(report["modes"])
    print(
        f"Extension experiment: {args.shots} shots, seeds {report['seeds']}, R@1 on the held-out test split"
    )
    print("| direction | " + " | ".join(modes) + " |")
    print("|---|" + "---:|" * len(modes))
    for d in DIRECTIONS:
        print(f"| {d} | " + " | ".join(f"{report['modes'][m]['R@1'][d]:.3f}" for m in modes) + " |")
    for d in ("text->image", "image->text"):
        print(
            f"| {d} before extension | "
            + " | ".join(f"{report['modes'][m]['image_text_R@1_before'][d]:.3f}" for m in modes)
            + " |"
        )
    print(
        "| image/text embeddings bit-identical after extension | "
        + " | ".join(str(report["modes"][m]["image_text_bit_identical"]) for m in modes)
        + " |"
    )
    print(
        "| modality gap | "
        + " | ".join(f"{report['modes'][m]['modality_gap']:.3f}" for m in modes)
        + " |"
    )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
