"""``spaner train``: few-shot training of the shared prompt and aligners from a manifest.

The manifest (JSONL) has one item per line: ``id``, optional ``concept``/``split``/``meta``,
and ``text`` and/or file paths under ``image``, ``audio``, ... relative to the manifest.
Frozen features are cached, so re-runs skip the encoders.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
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

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="few-shot train prompt + aligners",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True, type=Path, help="JSONL manifest")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    p.add_argument("--json", action="store_true", help="print the training record as JSON")
    add_model_args(p)
    add_aligner_args(p)
    add_train_args(p)
    add_cache_args(p)
    p.set_defaults(func=run)


def best_summary(result) -> str:
    """The kept epoch and its validation figures."""
    if not result.val_loss:
        return f"kept epoch {result.best_epoch} (no validation set)"
    i = result.best_epoch - 1
    recall = f", val R@1 {result.val_recall[i]:.3f}" if result.val_recall else ""
    return f"kept epoch {result.best_epoch}: val loss {result.val_loss[i]:.3f}{recall}"


def report_line(report: dict) -> str:
    return "  ".join(f"{d} {m['R@1']:.3f}" for d, m in report.items())


def run(args: argparse.Namespace) -> int:
    from spaner.training.manifest import load_manifest

    from ._model import spaner_from_args

    manifest = load_manifest(args.manifest)
    sp = spaner_from_args(args, manifest)
    cfg = args.train_cfg = train_config(args, sp.model.config.profile)
    cache = feature_cache(args)
    data = sp.prepare(manifest, cfg, cache)
    t0 = time.perf_counter()
    result = sp.fit(data, cfg, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    return save_and_report(
        args,
        sp,
        data,
        result,
        seconds,
        {"relevance": data.splits.relevance},
        f"trained {result.epochs_run} epochs in {seconds:.1f}s on {result.train_items} items "
        f"(val {result.val_items})",
    )


def save_and_report(
    args: argparse.Namespace, sp, data, result, seconds: float, record: dict, headline: str
) -> int:
    """Score the test split, save the checkpoint with its training record, print the summary
    (or the record as JSON). Shared by ``train`` and ``extend``."""
    from spaner.evaluation.compare import evaluate_model

    record = {
        **record,
        "train": result.to_dict(),
        "train_config": asdict(args.train_cfg),
        "manifest": str(args.manifest.resolve()),
        "train_seconds": round(seconds, 2),
    }
    if data.test.modalities:
        retrieval, coherence = evaluate_model(sp.model, data.test)
        record["test"] = {"retrieval": retrieval, "coherence": coherence}
    sp.save(args.out, extra=record)
    if args.json:
        print_json({"checkpoint": str(args.out), **record})
        return 0
    print(
        f"{headline}: train loss {result.initial_loss:.3f} -> {result.train_loss[-1]:.3f}; {best_summary(result)}"
    )
    if "test" in record:
        print(f"test R@1 ({data.splits.relevance}): {report_line(record['test']['retrieval'])}")
    print(f"checkpoint: {args.out}")
    return 0
