"""``spaner extend``: add or retrain ONE modality's aligner against a trained model.

The shared prompt and every other aligner stay frozen, so embeddings of the other
modalities are bit-identical before and after. A new modality needs ``--encoder NAME``
(any registered encoder, including plugins) and a manifest pairing it with at least one
modality the model already has. With ``--align-through-text`` (audio on CLAP) the aligner is
first fitted from the manifest's phrases through the encoder's text tower; the manifest then
needs no items of the modality (README, "Aligning through text").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import (
    add_cache_args,
    add_text_bridge_args,
    add_train_args,
    bridge_phrases,
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
    add_text_bridge_args(p, modalities=False)
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spaner.errors import ConfigError
    from spaner.pipeline import Spaner
    from spaner.training.manifest import load_manifest

    from .train import save_and_report

    sp = Spaner.load(args.checkpoint)
    manifest = load_manifest(args.manifest)
    shots = args.modality in manifest.modalities
    if not shots and not args.align_through_text:
        raise ConfigError(f"{args.manifest} has no items of modality {args.modality!r}")
    others = [m for m in manifest.modalities if m in sp.modalities and m != args.modality]
    if shots and not others:
        raise ConfigError(
            f"{args.manifest} pairs {args.modality!r} with no modality the model has ({', '.join(sp.modalities)})"
        )
    _, options = encoder_choice(
        argparse.Namespace(encoder=[], weights=args.weights, encoder_opt=args.encoder_opt)
    )
    cfg = args.train_cfg = train_config(args, sp.model.config.profile)
    cache = feature_cache(args)
    sp.add_modality(args.modality, args.encoder, options.get(args.modality))
    t0 = time.perf_counter()
    record: dict = {"extend": {"modality": args.modality, "from": str(args.checkpoint)}}
    headline = f"extended {args.modality!r}"
    if args.align_through_text:
        phrases = bridge_phrases(args, manifest, cfg.seed)
        bridge = sp.align_through_text(args.modality, phrases, {"seed": cfg.seed}, cache)
        record["through_text"] = {args.modality: bridge.to_dict()}
        headline += f" through {bridge.phrases} phrases"
        if bridge.val_recall is not None:
            headline += f" (held-out R@1 {bridge.val_recall_before:.3f} -> {bridge.val_recall:.3f})"
    data = sp.prepare(manifest, cfg, cache)  # once: for training and for the test scores
    result = sp.extend(args.modality, data, cfg, progress=not args.quiet) if shots else None
    seconds = time.perf_counter() - t0
    if result is not None:
        headline += f", then with its items: {result.epochs_run} epochs"
    return save_and_report(args, sp, data, result, seconds, record, f"{headline} in {seconds:.1f}s")
