"""``spaner extend``: add or retrain ONE modality's aligner against a trained model.

The shared prompt and every other aligner stay frozen, so embeddings of the other
modalities are bit-identical before and after. A new modality needs ``--encoder NAME``
(any registered encoder, including plugins) and a manifest pairing it with at least one
modality the model already has.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import (
    add_cache_args,
    add_train_args,
    encoder_choice,
    feature_cache,
    train_config,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extend",
        help="train only one modality's aligner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="trained checkpoint to extend")
    p.add_argument(
        "--modality", required=True, help="the modality whose aligner to train (new or existing)"
    )
    p.add_argument(
        "--manifest",
        required=True,
        type=Path,
        help="JSONL manifest with items of the modality and of existing ones",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="checkpoint directory to write (may equal --checkpoint)",
    )
    p.add_argument(
        "--encoder", default=None, help="encoder NAME for a new modality (see `spaner encoders`)"
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="MODALITY=PATH",
        help="local weights for the new encoder",
    )
    p.add_argument(
        "--encoder-opt",
        action="append",
        default=[],
        metavar="MODALITY:KEY=VALUE",
        help="extra encoder option",
    )
    p.add_argument("--json", action="store_true", help="print the training record as JSON")
    add_train_args(p)
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spaner.errors import ConfigError
    from spaner.pipeline import Spaner
    from spaner.training.manifest import load_manifest

    from .train import save_and_report

    sp = Spaner.load(args.checkpoint)
    manifest = load_manifest(args.manifest)
    if args.modality not in manifest.modalities:
        raise ConfigError(f"{args.manifest} has no items of modality {args.modality!r}")
    others = [m for m in manifest.modalities if m in sp.modalities and m != args.modality]
    if not others:
        raise ConfigError(
            f"{args.manifest} pairs {args.modality!r} with no modality the model has ({', '.join(sp.modalities)})"
        )
    _, options = encoder_choice(
        argparse.Namespace(encoder=[], weights=args.weights, encoder_opt=args.encoder_opt)
    )
    cfg = args.train_cfg = train_config(args, sp.model.config.profile)
    cache = feature_cache(args)
    sp.add_modality(args.modality, args.encoder, options.get(args.modality))
    data = sp.prepare(manifest, cfg, cache)  # once: for training and for the test scores
    t0 = time.perf_counter()
    result = sp.extend(args.modality, data, cfg, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    return save_and_report(
        args,
        sp,
        data,
        result,
        seconds,
        {"extend": {"modality": args.modality, "from": str(args.checkpoint)}},
        f"extended {args.modality!r} in {seconds:.1f}s: {result.epochs_run} epochs",
    )
