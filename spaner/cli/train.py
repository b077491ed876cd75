"""``spaner train``: few-shot training of the shared prompt and aligners from a manifest.

The manifest (JSONL) has one item per line: ``id``, optional ``concept``/``split``/``meta``,
and ``text`` and/or file paths under ``image``, ``audio``, ... relative to the manifest.
Frozen features are cached, so re-runs skip the encoders.

``--align-through-text`` (audio on CLAP) trains the other modalities first, then fits the audio
aligner's map from the manifest's phrases through CLAP's text tower, then trains it with the
manifest's audio shots if it has any (README, "Aligning through text").
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
    add_text_bridge_args,
    add_train_args,
    bridge_phrases,
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
    add_text_bridge_args(p, modalities=True)
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
    bridged = [m.strip() for m in (args.align_through_text or "").split(",") if m.strip()]
    sp = spaner_from_args(args, manifest, bridged)
    cfg = args.train_cfg = train_config(args, sp.model.config.profile)
    cache = feature_cache(args)
    if bridged:
        return _run_through_text(args, sp, manifest, cfg, cache, bridged)
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


def _run_through_text(
    args: argparse.Namespace, sp, manifest, cfg, cache, bridged: list[str]
) -> int:
    """The other modalities trained together, then each of ``bridged`` aligned through text and
    trained with its shots when the manifest has them (only its aligner: ``Spaner.extend``)."""
    from spaner.errors import ConfigError
    from spaner.training.text_bridge import can_align_through_text

    for m in bridged:  # before any training: say at once what cannot be aligned
        if why := can_align_through_text(sp.model, sp.encoders, m):
            raise ConfigError(f"--align-through-text {m}: {why}")
    t0 = time.perf_counter()
    others = [m for m in sp.modalities if m not in bridged and manifest.count(m)]
    result = None
    if len(others) >= 2:
        result = sp.fit(sp.prepare(manifest, cfg, cache, others), cfg, progress=not args.quiet)
    phrases = bridge_phrases(args, manifest, cfg.seed)
    through = {
        m: sp.align_through_text(m, phrases, {"seed": cfg.seed}, cache).to_dict() for m in bridged
    }
    data = sp.prepare(manifest, cfg, cache)
    for m in bridged:
        if m in data.train.modalities:
            result = sp.extend(m, data, cfg, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    lines = [
        f"{m} aligned through {r['phrases']} phrases"
        + (
            f" (held-out R@1 {r['val_recall_before']:.3f} -> {r['val_recall']:.3f})"
            if r["val_recall"] is not None
            else ""
        )
        + (", then with its items" if m in data.train.modalities else "")
        for m, r in through.items()
    ]
    return save_and_report(
        args,
        sp,
        data,
        result,
        seconds,
        {"relevance": data.splits.relevance, "through_text": through},
        "; ".join(lines) + f" in {seconds:.1f}s",
    )


def save_and_report(
    args: argparse.Namespace, sp, data, result, seconds: float, record: dict, headline: str
) -> int:
    """Score the test split, save the checkpoint with its training record, print the summary
    (or the record as JSON). Shared by ``train`` and ``extend``; ``result`` is None when
    nothing but a text alignment ran."""
    from spaner.evaluation.compare import evaluate_model

    record = {
        **record,
        "train": result.to_dict() if result is not None else None,
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
    if result is None:
        print(headline)
    else:
        print(
            f"{headline}: train loss {result.initial_loss:.3f} -> {result.train_loss[-1]:.3f}; "
            f"{best_summary(result)}"
        )
    if "test" in record:
        print(f"test R@1 ({data.splits.relevance}): {report_line(record['test']['retrieval'])}")
    print(f"checkpoint: {args.out}")
    return 0
