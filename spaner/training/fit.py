"""Contrastive few-shot training of the shared prompt and the aligners.

:func:`fit` trains every trainable parameter (prompt(s), aligners, temperature); with
``only=[m]`` it trains modality ``m``'s aligner alone (:func:`spaner.pipeline.Spaner.extend`)
and every other parameter stays bit-identical. Mini-batches mix all modalities; the loss is
``cfg.loss`` (:mod:`spaner.model.losses`): by default the mean symmetric multi-positive InfoNCE over
every modality pair present (pairs that involve a trained modality, when ``only`` is given);
``mixed`` is one InfoNCE over every item of the batch whatever its modality (with ``only``,
anchored on the trained modalities' items). Validation runs every ``val_every``
epochs (and on the last); early stopping on it restores the best validated weights
(``keep="best"``), or ``keep="last"`` trains the whole schedule and keeps its end.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import torch
from tqdm.auto import tqdm

from spaner.model.config import TrainConfig
from spaner.model.embedding import embed_items
from spaner.model.losses import objective
from spaner.model.network import SpanerModel
from spaner.training.batching import PackedItems
from spaner.training.data import FeatureSet
from spaner.training.sharded import ShardedStep

__all__ = ["fit", "TrainResult", "feature_loss"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    epochs_run: int
    best_epoch: int
    best_val_loss: float | None
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(
        default_factory=list
    )  # per epoch; None where not validated (val_every)
    val_recall: list[float | None] = field(default_factory=list)
    initial_loss: float | None = None
    train_items: int = 0
    val_items: int = 0
    val_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _pairs(modalities: Sequence[str], only: Sequence[str] | None) -> list[tuple[str, str]]:
    return [
        (a, b) for a, b in combinations(modalities, 2) if only is None or a in only or b in only
    ]


def _loss(
    model: SpanerModel,
    embs: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    pairs: list[tuple[str, str]],
    cfg: TrainConfig | None,
    only: Sequence[str] | None,
) -> torch.Tensor:
    cfg = cfg or TrainConfig()
    device = model.logit_scale.device  # validation embeddings come back on the CPU
    embs = {m: e.to(device) for m, e in embs.items()}
    labels = {m: lab.to(device) for m, lab in labels.items()}
    return objective(
        embs,
        labels,
        model.logit_scale,
        pairs,
        cfg.loss,
        cfg.gap_weight,
        cfg.balance,
        only,
        cfg.mix_weight,
    )


def validation_metrics(
    model: SpanerModel,
    fs: FeatureSet,
    only: Sequence[str] | None = None,
    cfg: TrainConfig | None = None,
) -> tuple[float, float]:
    """(training objective, mean Recall@1) over the modality pairs training optimises, in eval
    mode, embedding every item once."""
    from spaner.evaluation.metrics import retrieval_metrics

    embs = {
        m: embed_items(model, m, f.items) for m, f in fs.modalities.items() if m in model.aligners
    }
    pairs = _pairs(sorted(embs), only)
    if not pairs:
        return float("nan"), float("nan")
    with torch.no_grad():
        labels = {m: fs.modalities[m].labels for m in embs}
        loss = _loss(model, embs, labels, pairs, cfg, only)
    metrics = retrieval_metrics(embs, fs, ks=(1,))
    directions = [f"{a}->{b}" for a, b in pairs] + [f"{b}->{a}" for a, b in pairs]
    recalls = [metrics[d]["R@1"] for d in directions if d in metrics]
    return float(loss), float(sum(recalls) / len(recalls)) if recalls else float("nan")


def feature_loss(
    model: SpanerModel,
    fs: FeatureSet,
    only: Sequence[str] | None = None,
    cfg: TrainConfig | None = None,
) -> float:
    """The full-set training objective (eval mode)."""
    return validation_metrics(model, fs, only, cfg)[0]


def fit(
    model: SpanerModel,
    train: FeatureSet,
    val: FeatureSet | None,
    cfg: TrainConfig,
    only: Sequence[str] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place; returns the loss history. See the module docstring."""
    cfg.validate()
    modalities = sorted(
        m for m in train.modalities if m in model.aligners
    )  # order-independent of the manifest
    if len(modalities) < 2:
        raise ValueError(f"training needs at least two modalities with data, got {modalities}")
    if only is not None:
        missing = [m for m in only if m not in modalities]
        if missing:
            raise ValueError(f"no training data for modality {missing}")
        params = [p for m in only for p in model.trainable_for(m)]
    else:
        params = list(model.parameters())
        a = model.config.aligner
        if a.anchor in model.aligners and not a.anchor_trainable:  # the anchor defines the space
            fixed = {id(p) for p in model.aligners[a.anchor].parameters()}
            params = [p for p in params if id(p) not in fixed]
    frozen = {id(p) for p in model.parameters()} - {id(p) for p in params}
    saved_flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen)

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    entries = [(m, i) for m in modalities for i in range(len(train.modalities[m]))]
    steps_per_epoch = max(1, math.ceil(len(entries) / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    # 10% warm-up; OneCycleLR divides by zero when the warm-up ends exactly at step 1 (10 steps in all)
    pct_start = 0.15 if abs(0.1 * total_steps - 1.0) < 1e-9 else 0.1
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=pct_start
    )
    pairs = _pairs(modalities, only)
    device = model.prompt.device  # the few-shot set is copied there once
    with torch.enable_grad():  # what the aligners see during the steps (native_only reads it)
        packed = {
            m: PackedItems(train.modalities[m].items, model.aligners[m], device)
            for m in modalities
            if train.modalities[m].items
        }
    result = TrainResult(
        0, 0, None, train_items=len(entries), val_items=len(val) if val is not None else 0
    )
    result.initial_loss = feature_loss(model, train, only, cfg)
    best_state = copy.deepcopy(model.state_dict())
    best = math.inf
    stale = 0

    def set_mode() -> None:
        model.train()
        if only is not None:  # frozen aligners stay in eval mode (no dropout)
            for m, aligner in model.aligners.items():
                aligner.train(m in only)

    token_dropout = 0.1 if cfg.augment else 0.0
    # workers > 1: each batch in shards on that many threads, torch on one thread each
    sharded = ShardedStep(cfg.workers) if cfg.workers > 1 and device.type == "cpu" else None
    bar = tqdm(
        range(cfg.epochs),
        desc="train",
        unit="epoch",
        disable=None if progress else True,
        leave=False,
    )
    try:
        for epoch in bar:
            set_mode()
            order = torch.randperm(len(entries), generator=gen).tolist()
            losses = []
            for s in range(0, len(order), cfg.batch_size):
                chunk = [entries[j] for j in order[s : s + cfg.batch_size]]
                by_mod: dict[str, list[int]] = {}
                for m, i in chunk:
                    by_mod.setdefault(m, []).append(i)
                batch_pairs = [(a, b) for a, b in pairs if a in by_mod and b in by_mod]
                if not batch_pairs:
                    continue
                labels = {m: train.modalities[m].labels[idx] for m, idx in by_mod.items()}
                opt.zero_grad(set_to_none=True)
                if sharded is not None:
                    loss = sharded.step(
                        model,
                        packed,
                        by_mod,
                        token_dropout,
                        gen,
                        functools.partial(
                            _loss, model, labels=labels, pairs=batch_pairs, cfg=cfg, only=only
                        ),
                        params,
                    )
                else:
                    embs = {
                        m: model.embed(m, packed[m].batch(idx, token_dropout, gen))
                        for m, idx in by_mod.items()
                    }
                    loss = _loss(model, embs, labels, batch_pairs, cfg, only)
                    loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
                losses.append(loss.detach())  # read once per epoch: no device sync per step
            train_loss = float(torch.stack(losses).double().mean()) if losses else 0.0
            result.train_loss.append(train_loss)
            result.epochs_run = epoch + 1
            has_val = val is not None and len(val) > 0
            if has_val and (epoch + 1) % cfg.val_every and epoch + 1 < cfg.epochs:
                stale += 1  # patience counts epochs, validated or not
                result.val_loss.append(None)  # aligned with epochs; None = not validated
                result.val_recall.append(None)
                continue
            t_val = time.perf_counter()
            if has_val:
                val_loss, recall = validation_metrics(model, val, only, cfg)
                result.val_loss.append(val_loss)
                result.val_recall.append(recall)
            result.val_seconds += time.perf_counter() - t_val
            if has_val and cfg.monitor == "recall":
                monitor = -recall + 1e-3 * result.val_loss[-1]  # recall first, loss breaks ties
            else:
                monitor = result.val_loss[-1] if has_val else train_loss
            if monitor is None or not math.isfinite(monitor):
                # a validation set with no answerable pair (a tiny collection): it cannot choose
                # an epoch, so watch the training loss instead of keeping the untrained weights
                monitor = train_loss
            if monitor < best - 1e-6:
                best, stale, result.best_epoch = monitor, 0, epoch + 1
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{monitor:.3f}")
            if stale >= cfg.patience and epoch + 1 >= cfg.min_epochs and cfg.keep == "best":
                log.info(
                    "early stop at epoch %d (best %d, monitor %.4f)",
                    epoch + 1,
                    result.best_epoch,
                    best,
                )
                break
    finally:
        bar.close()
        if sharded is not None:
            sharded.close()
    if cfg.keep == "best":
        model.load_state_dict(best_state)
    model.eval()
    for n, p in model.named_parameters():
        p.requires_grad_(saved_flags.get(n, True))
    if val is not None and len(val) and result.best_epoch:
        result.best_val_loss = result.val_loss[result.best_epoch - 1]
    log.info(
        "trained %d epochs; loss %.4f -> %.4f (best epoch %d)",
        result.epochs_run,
        result.initial_loss or float("nan"),
        result.train_loss[-1] if result.train_loss else float("nan"),
        result.best_epoch,
    )
    return result
