"""Which frozen image features, pooling and training-time augmentation serve the 8x8 digits?

A multinomial logistic regression (L2, full-batch L-BFGS) on each encoder's frozen tokens, pooled
``mean`` (one vector per image) or ``grid4`` (the token grid average-pooled to 4x4 and
concatenated: keeps where the strokes are), standardised on the training split, fitted on K
training images per digit (seeded draws) plus ``--copies`` augmented copies of each
(:mod:`spaner.training.image_augment`, as ``TrainConfig.image_augment`` makes them) and scored on the
``val`` and ``test`` images. Choose on ``val``; ``test`` is printed for the record.

    .venv/bin/python studies/digits_image_probe.py --manifest /tmp/digits/manifest.jsonl \\
        --copies 0,8 [--encoders randconv-wide-image] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from digits_image_candidates import build_candidate
from machine import cpu_model

#: encoder -> (factory options, poolings)
ENCODERS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "efficientnet-lite0-image": ({"labels": "none"}, ("mean",)),
    "randconv-wide-image": ({}, ("mean", "grid4")),
    "digitcnn-mnist5k-image": ({}, ("mean", "grid4")),
}

log = logging.getLogger("digits_image_probe")


def _pool(tokens: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "mean":
        return tokens.mean(1)
    side = math.isqrt(tokens.shape[1])
    grid = tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)
    return F.adaptive_avg_pool2d(grid, 4).flatten(1)


def _encode(enc, images: list, poolings: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out: dict[str, list[torch.Tensor]] = {p: [] for p in poolings}
    for start in range(0, len(images), 64):
        with torch.no_grad():
            tokens = enc.forward(enc.preprocess(images[start : start + 64])).tokens
        for p in poolings:
            out[p].append(_pool(tokens, p))
    return {p: torch.cat(v).double() for p, v in out.items()}


def _logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-2):
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe(
    manifest: Path, shots: int, seeds: int, copies: list[int], encoders: list[str]
) -> list[dict]:
    from spaner.encoders import build_encoder

    from spaner.training.image_augment import augment_image

    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    images = [r for r in rows if "image" in r]
    names = sorted({r["concept"] for r in images})
    y = torch.tensor([names.index(r["concept"]) for r in images])
    split = np.array([r["split"] for r in images])
    train = split == "train"
    report = []
    for name in encoders:
        if name in ENCODERS:
            options, poolings = ENCODERS[name]
            enc = build_encoder(name, **options)
        else:
            enc, poolings = build_candidate(name)
        raw = [enc.load(str(manifest.parent / r["image"])) for r in images]
        full = _encode(enc, raw, poolings)
        stats = {p: (v[train].mean(0), v[train].std(0) + 1e-6) for p, v in full.items()}
        for n_copies in copies:
            scores = {p: {"val": [], "test": []} for p in poolings}
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                pick = [
                    int(i)
                    for c in range(len(names))
                    for i in rng.choice(np.where((y.numpy() == c) & train)[0], shots, replace=False)
                ]
                extra = [
                    augment_image(raw[i], np.random.default_rng([seed, k, i]))
                    for k in range(n_copies)
                    for i in pick
                ]
                feats = _encode(enc, extra, poolings) if extra else None
                labels = y[pick].repeat(n_copies + 1)
                for p in poolings:
                    mean, std = stats[p]
                    x = full[p][pick] if feats is None else torch.cat([full[p][pick], feats[p]])
                    w, b = _logistic((x - mean) / std, labels, len(names))
                    for s in ("val", "test"):
                        rows_s = torch.from_numpy(split == s)
                        pred = (((full[p][rows_s] - mean) / std) @ w + b).argmax(1)
                        scores[p][s].append(float((pred == y[rows_s]).double().mean()))
            for p in poolings:
                row = {"encoder": name, "pooling": p, "copies": n_copies}
                row.update({s: round(float(np.mean(v)), 3) for s, v in scores[p].items()})
                log.info("%s", row)
                report.append(row)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=Path("/tmp/digits/manifest.jsonl"))
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--copies", default="0,8", help="comma-separated augmented copies per shot")
    p.add_argument(
        "--encoders",
        default=",".join(ENCODERS),
        help="comma-separated, from ENCODERS or digits_image_candidates.CANDIDATES",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    copies = [int(c) for c in args.copies.split(",")]
    report = probe(args.manifest, args.shots, args.seeds, copies, args.encoders.split(","))
    if args.json:
        print(json.dumps({"cpu": cpu_model(), "shots": args.shots, "probe": report}, indent=2))
        return
    print(f"CPU: {cpu_model()}; {args.shots} shots, {args.seeds} seeds")
    print("| image encoder | pooling | augmented copies | val accuracy | test accuracy |")
    print("|---|---|---:|---:|---:|")
    for r in report:
        print(
            f"| `{r['encoder']}` | {r['pooling']} | {r['copies']} | {r['val']:.3f} | "
            f"{r['test']:.3f} |"
        )


if __name__ == "__main__":
    main()
