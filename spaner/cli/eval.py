"""``spaner eval``: Recall@1/5/10 and mAP@10 in every direction, plus the coherence of the space,
for SPANER and its baselines trained on the same split in the same run.

Baselines: a per-modality linear adapter (same loss), separate per-modality prompts
instead of one shared prompt, and the encoders' native shared space where one exists.
With ``--checkpoint`` the given model is scored too (as ``checkpoint``).

The mixed pool (every test item of every modality ranked at once) is reported ranked by each
method's search-time score calibration (``--calibration``, fitted on the validation split for
every method alike; ``mixed_pool`` in ``--json``) and by raw cosine (``mixed_pool_raw``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_aligner_args,
    add_cache_args,
    add_model_args,
    add_train_args,
    feature_cache,
    print_json,
    train_config,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate SPANER against baselines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, type=Path, help="JSONL manifest with a test split")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="also score this trained checkpoint (its encoders are used)",
    )
    p.add_argument(
        "--methods",
        default="spaner,linear_adapter,separate_prompts,native",
        help="comma-separated methods to train and score",
    )
    p.add_argument("--seeds", type=int, default=1, help="average over this many seeds (0..N-1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on the last line")
    add_model_args(p)
    add_aligner_args(p)
    add_train_args(p)
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spaner.errors import ConfigError
    from spaner.evaluation.compare import METHODS, compare, format_markdown
    from spaner.pipeline import Spaner
    from spaner.training.manifest import load_manifest

    from ._model import spaner_from_args

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    if args.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    manifest = load_manifest(args.manifest)
    checkpoint_model = checkpoint_calibration = None
    if args.checkpoint is not None:
        sp = Spaner.load(args.checkpoint, device=args.device)
        checkpoint_model, checkpoint_calibration = sp.model, sp.calibration
    else:
        sp = spaner_from_args(args, manifest)
    cfg = train_config(args, sp.model.config.profile)
    report = compare(
        sp,
        manifest,
        cfg,
        methods,
        list(range(args.seeds)),
        feature_cache(args),
        checkpoint_model,
        progress=not args.quiet,
        checkpoint_calibration=checkpoint_calibration,
    )
    report["profile"] = sp.model.config.profile
    if args.json:
        print_json(report)
    else:
        print(format_markdown(report))
    return 0
