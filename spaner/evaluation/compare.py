"""Train SPANER and its baselines on one split and score them side by side.

Methods (all on the same frozen features, the same few-shot sample, the same loss):

* ``spaner``: shared prompt + cross-attention aligners;
* ``separate_prompts``: the same aligners, one prompt per modality (what sharing buys);
* ``linear_adapter``: masked mean-pool + one linear map per modality;
* ``native``: the encoders' own shared space, where one exists (untrained model);
* ``checkpoint``: a given trained checkpoint, when evaluating one.

Metrics are averaged over ``seeds`` (each seed draws its own few-shot sample). The mixed pool
is scored twice: ranked by the raw cosine (``mixed_pool_raw``) and by the method's search-time
score calibration (``mixed_pool``; :mod:`spaner.search.calibration`), fitted for every trained method
and baseline alike on the validation split (``cfg.calibration``); a ``checkpoint`` is scored with
its own calibration, or by raw cosine when it has none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from spaner.evaluation.metrics import coherence_metrics, mixed_pool_metrics, retrieval_metrics
from spaner.model.config import AlignerConfig, SpanerConfig, TrainConfig
from spaner.model.embedding import embed_items
from spaner.model.network import SpanerModel
from spaner.pipeline import Spaner
from spaner.search.calibration import Calibration, calibrate_model
from spaner.training.data import FeatureSet
from spaner.training.features import FeatureCache
from spaner.training.fit import fit
from spaner.training.manifest import Manifest

__all__ = ["METHODS", "compare", "format_markdown", "evaluate_model", "score_model"]

log = logging.getLogger(__name__)

METHODS = ("spaner", "linear_adapter", "separate_prompts", "native")


def _variant(config: SpanerConfig, method: str) -> SpanerConfig | None:
    a = config.aligner
    if method == "spaner":
        aligner = replace(a, kind="cross_attention", prompt_mode="shared")
    elif method == "separate_prompts":
        aligner = replace(a, kind="cross_attention", prompt_mode="separate")
    elif method == "linear_adapter":
        aligner = replace(a, kind="linear")
    elif method == "native":
        mods = {m: c for m, c in config.modalities.items() if c.use_native}
        return (
            SpanerConfig(aligner=a, modalities=mods, profile=config.profile)
            if len(mods) >= 2
            else None
        )
    else:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return SpanerConfig(
        aligner=AlignerConfig(**asdict(aligner)),
        modalities=config.modalities,
        profile=config.profile,
    )


def _embed(model: SpanerModel, test: FeatureSet) -> dict[str, torch.Tensor]:
    return {
        m: embed_items(model, m, f.items) for m, f in test.modalities.items() if m in model.aligners
    }


def evaluate_model(model: SpanerModel, test: FeatureSet) -> tuple[dict[str, Any], dict[str, Any]]:
    """(retrieval metrics per direction, coherence) of ``model`` on ``test``."""
    embs = _embed(model, test)
    return retrieval_metrics(embs, test), coherence_metrics(embs, test)


def score_model(
    model: SpanerModel, test: FeatureSet, calibration: Calibration | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(retrieval per direction, coherence, mixed-pool metrics per query modality ranked by
    ``calibration`` (by raw cosine without one), mixed-pool metrics by raw cosine)."""
    embs = _embed(model, test)
    raw = mixed_pool_metrics(embs, test)
    return (
        retrieval_metrics(embs, test),
        coherence_metrics(embs, test),
        mixed_pool_metrics(embs, test, calibration=calibration) if calibration else raw,
        raw,
    )


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if key in r]
        if isinstance(vals[0], dict):
            out[key] = _mean(vals)
        elif all(v is not None for v in vals):
            out[key] = round(float(np.mean(vals)), 4)
        else:
            out[key] = None
    return out


def compare(
    sp: Spaner,
    manifest: Manifest,
    cfg: TrainConfig,
    methods: Sequence[str] = ("spaner", "linear_adapter", "separate_prompts", "native"),
    seeds: Sequence[int] = (0,),
    cache: FeatureCache | None = None,
    checkpoint_model: SpanerModel | None = None,
    progress: bool = True,
    checkpoint_calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Run every method for every seed; returns the report (see ``spaner eval --json``)."""
    per_method: dict[str, list[tuple[dict, dict, dict, dict]]] = {}
    calibrations: dict[str, str | None] = {}
    seconds: dict[str, float] = {}
    info: dict[str, Any] = {}
    for seed in seeds:
        run_cfg = replace(cfg, seed=seed)
        data = sp.prepare(manifest, run_cfg, cache)
        if not data.test.modalities:
            from spaner.errors import ManifestError

            raise ManifestError(
                f"{manifest.path}: no test items to evaluate on (add 'split': 'test' lines)"
            )
        info = {
            "relevance": data.splits.relevance,
            "train_items": {m: len(f) for m, f in data.train.modalities.items()},
            "test_items": {m: len(f) for m, f in data.test.modalities.items()},
        }
        if checkpoint_model is not None:
            per_method.setdefault("checkpoint", []).append(
                score_model(checkpoint_model, data.test, checkpoint_calibration)
            )
            calibrations["checkpoint"] = _describe(checkpoint_calibration)
        for method in methods:
            config = _variant(sp.model.config, method)
            if config is None:
                log.info("no native shared space between these encoders; skipping 'native'")
                continue
            torch.manual_seed(seed)
            model = SpanerModel(config)
            t0 = time.perf_counter()
            if method != "native":
                log.info("training %s (seed %d)", method, seed)
                fit(model, data.train, data.val, run_cfg, progress=progress)
            seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
            cal = calibrate_model(model, data.val, data.train, run_cfg.calibration)
            calibrations[method] = _describe(cal)
            per_method.setdefault(method, []).append(score_model(model, data.test, cal))
    report: dict[str, Any] = {
        "methods": {m: _mean([r[0] for r in runs]) for m, runs in per_method.items()},
        "coherence": {m: _mean([r[1] for r in runs]) for m, runs in per_method.items()},
        "mixed_pool": {m: _mean([r[2] for r in runs]) for m, runs in per_method.items()},
        "mixed_pool_raw": {m: _mean([r[3] for r in runs]) for m, runs in per_method.items()},
        "calibration": calibrations,
        "shots": cfg.shots,
        "fraction": cfg.fraction,
        "seeds": list(seeds),
        "train_seconds": {m: round(s / len(seeds), 2) for m, s in seconds.items()},
        "encoders": {m: e.name for m, e in sp.encoders.items()},
        **info,
    }
    return report


def _describe(cal: Calibration | None) -> str | None:
    return f"{cal.method} ({cal.fitted_on} split)" if cal is not None else None


def format_markdown(report: dict[str, Any]) -> str:
    """The report as three Markdown tables (retrieval, coherence, mixed pool)."""
    lines = [
        f"Relevance: **{report['relevance']}** (a hit is "
        + (
            "any item of the query's concept"
            if report["relevance"] == "concept"
            else "the query's own paired item"
        )
        + f"); shots: {report['shots']}; seeds: {report['seeds']}; test items: {report['test_items']}",
        "",
        "| method | direction | R@1 | R@5 | R@10 | mAP@10 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for method, dirs in report["methods"].items():
        for d, m in dirs.items():
            lines.append(
                f"| {method} | {d} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['R@10']:.3f} | {m['mAP@10']:.3f} |"
            )
    lines += [
        "",
        "| method | modality gap ↓ | neighbour purity ↑ | silhouette concept ↑ | silhouette modality ↓ |",
        "|---|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for method, c in report["coherence"].items():
        lines.append(
            f"| {method} | {fmt(c['modality_gap'])} | {fmt(c['neighbour_purity'])} | "
            f"{fmt(c['silhouette_concept'])} | {fmt(c['silhouette_modality'])} |"
        )
    lines += [
        "",
        "Mixed pool: each test query ranks every other test item of every modality, by the "
        "calibrated score (the method's calibration, as a search does) and by raw cosine.",
        "",
        "| method | ranked by | queries | P@10 | P@10 per direction | mAP@10 "
        "| own modality in top 10 | own modality in pool | modality-mix ratio ↑ |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cals = report.get("calibration", {})
    for method, per_mod in report.get("mixed_pool", {}).items():
        tables = [(cals.get(method), per_mod)] if cals.get(method) else []
        tables.append(("raw cosine", report.get("mixed_pool_raw", {}).get(method, per_mod)))
        for ranked_by, table in tables:
            for q, m in table.items():
                lines.append(
                    f"| {method} | {ranked_by} | {q} | {m['P@10']:.3f} | "
                    f"{m['P@10_directions']:.3f} | {m['mAP@10']:.3f} | {m['own_share']:.3f} | "
                    f"{m['pool_own_share']:.3f} | {m['mix_ratio']:.3f} |"
                )
    return "\n".join(lines)
