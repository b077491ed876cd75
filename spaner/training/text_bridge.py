"""Aligning a modality through text: zero-shot audio in the shared space from phrases alone.

**What it needs.** A modality (audio) whose encoder has a *text tower sharing its native space*
(:meth:`~spaner.encoders.Encoder.text_tower`: CLAP's audio and text towers were trained
contrastively into one space, so the CLAP vector of a sound sits near the CLAP vector of the
words for it), and a model with a ``text`` modality (the anchor: the phrases' place in the
unified space).

**The design.** An aligner maps tokens and a native vector into the unified space
(:mod:`spaner.model.network`). Text cannot supply audio *tokens*, but CLAP's text tower does
supply vectors in the audio encoder's *native* space. So the audio aligner's head carries a
learned linear map ``M`` from CLAP's native space into the unified space
(:attr:`spaner.model.head.NativeHead.native_map`), beside the cross-attention residual, which
starts at exactly zero::

    z_audio = normalize(g * normalize(M @ normalize(clap_audio)) + residual(tokens))

For every phrase ``p`` (the manifest's texts and concept labels, and any phrases given), the
bridge computes ``c_p``, CLAP's text vector of ``p``, and ``a_p``, the model's own embedding of
``p`` through its text modality (frozen: the target the rest of the model already defines), and
trains ``M`` alone so that ``normalize(M c_p)`` ranks ``a_p`` first among the phrases'
embeddings: the symmetric InfoNCE of training, at the model's temperature, with phrases held
out (``val_fraction``) to keep the best step. Nothing else changes: the prompt, every other
aligner, the audio aligner's cross-attention and its residual head stay as they are, and the
residual stays zero, so at inference a sound lands at ``normalize(M clap_audio)``, near the
anchor's text for what CLAP hears.

InfoNCE rather than least squares or an orthogonal (Procrustes) fit: vectors of one encoder
share a large common direction, which the closed forms spend their fit on; ranking only asks
that each phrase be nearest its own target. On the tiny test models InfoNCE put held-out
phrases first 0.5-0.7 of the time (24 candidates), ridge regression and Procrustes at or near
chance.

**What it does not know.** CLAP's audio and text vectors are near each other, not equal (the
modality gap of contrastive models), and ``M`` learns from text only: a sound lands near the
phrase CLAP would give it, as well as CLAP ranks sounds by text and no better. Audio shots
afterwards (:meth:`spaner.pipeline.Spaner.extend`) train the residual and ``M`` further from
real sounds; the bridge is the start they train from. It must come before them: once the
residual has learned from audio, ``M`` cannot be retrained from text alone (a
:class:`~spaner.errors.ConfigError`).
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from spaner.encoders.base import Encoder
from spaner.errors import ConfigError
from spaner.model.embedding import embed_items
from spaner.model.network import SpanerModel, info_nce
from spaner.training.data import split_manifest
from spaner.training.features import FeatureCache, encode_items
from spaner.training.manifest import Manifest

__all__ = [
    "TextBridgeConfig",
    "BridgeResult",
    "ANCHOR",
    "can_align_through_text",
    "manifest_phrases",
    "read_phrases",
    "align_through_text",
    "fit_native_map",
]

log = logging.getLogger(__name__)

#: the modality whose embeddings of the phrases are the targets
ANCHOR = "text"


@dataclass
class TextBridgeConfig:
    """Settings of the native map's fit from phrases."""

    epochs: int = field(default=300, metadata={"help": "passes over the phrases"})
    lr: float = field(default=1e-2, metadata={"help": "AdamW learning rate of the map"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=512, metadata={"help": "phrases per step"})
    val_fraction: float = field(
        default=0.2, metadata={"help": "phrases held out to keep the best step (none under 10)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the held-out draw and the order"})


@dataclass
class BridgeResult:
    modality: str
    phrases: int
    train_phrases: int
    val_phrases: int
    epochs_run: int
    best_epoch: int
    #: held-out phrases: R@1 of CLAP text -> anchor text before and after (None without them)
    val_recall_before: float | None
    val_recall: float | None
    train_loss: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def can_align_through_text(
    model: SpanerModel, encoders: Mapping[str, Encoder], modality: str
) -> str | None:
    """None when ``modality`` can be aligned through text, else why not."""
    if ANCHOR not in model.aligners or ANCHOR not in encoders:
        return f"the model has no {ANCHOR!r} modality to align {modality!r} to"
    if modality not in model.aligners or modality not in encoders:
        return f"the model has no {modality!r} modality"
    if modality == ANCHOR:
        return f"{ANCHOR!r} is the anchor itself"
    if encoders[modality].text_tower() is None:
        return f"encoder {encoders[modality].name!r} has no text tower sharing its native space"
    head = model.aligners[modality].head
    if head.native_map is None:
        return (
            f"the {modality!r} aligner was built without a native map (its encoder's space is "
            "the unified one, or the model predates native maps)"
        )
    if bool(head.proj.weight.any()) or bool(head.proj.bias.any()):
        return (
            f"the {modality!r} aligner has already learned from {modality} items; align through "
            "text before training with them"
        )
    return None


def manifest_phrases(manifest: Manifest, seed: int = 0) -> list[str]:
    """The texts and concept labels of the manifest's training split (as
    :func:`~spaner.training.data.split_manifest` draws it with ``seed``: test lines never),
    once each, in manifest order."""
    seen: dict[str, None] = {}
    for item in split_manifest(manifest, seed).train:
        for phrase in (item.fields.get("text"), item.concept):
            if phrase is not None and phrase.strip():
                seen.setdefault(phrase.strip(), None)
    return list(seen)


def read_phrases(path: str | Path) -> list[str]:
    """One phrase per line (blank lines and lines starting with ``#`` skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def align_through_text(
    model: SpanerModel,
    encoders: Mapping[str, Encoder],
    modality: str,
    phrases: Sequence[str],
    cfg: TextBridgeConfig | None = None,
    cache: FeatureCache | None = None,
) -> BridgeResult:
    """Fit ``modality``'s native map from ``phrases`` (see the module docstring); only the map
    changes. Raises :class:`~spaner.errors.ConfigError` when the modality cannot be aligned so."""
    why = can_align_through_text(model, encoders, modality)
    if why:
        raise ConfigError(f"cannot align {modality!r} through text: {why}")
    phrases = list(dict.fromkeys(p.strip() for p in phrases if p and p.strip()))
    if len(phrases) < 2:
        raise ConfigError(
            f"aligning {modality!r} through text needs at least 2 phrases, got {len(phrases)}"
        )
    tower = encoders[modality].text_tower()
    assert tower is not None
    natives = [it.native for it in encode_items(tower, phrases, cache, desc="encode phrases")]
    anchor_items = encode_items(encoders[ANCHOR], phrases, cache, desc=f"encode {ANCHOR}")
    targets = embed_items(model, ANCHOR, anchor_items)
    log.info("aligning %s through %d phrases (%s)", modality, len(phrases), tower.name)
    result = fit_native_map(
        model, modality, torch.stack(natives), targets, cfg or TextBridgeConfig()
    )
    return result


def _recall(
    model: SpanerModel, modality: str, natives: torch.Tensor, targets: torch.Tensor
) -> float:
    head = model.aligners[modality].head
    with torch.no_grad():
        z = head.from_native(natives.to(head.proj.weight.device)).cpu()
    hits = (z @ targets.T).argmax(1) == torch.arange(len(z))
    return float(hits.float().mean())


def fit_native_map(
    model: SpanerModel,
    modality: str,
    natives: torch.Tensor,
    targets: torch.Tensor,
    cfg: TextBridgeConfig,
) -> BridgeResult:
    """Train ``model.aligners[modality].head.native_map`` so that phrase ``i``'s native vector
    ``natives[i]`` maps nearest its target ``targets[i]`` (InfoNCE over the phrases, the model's
    temperature); every other parameter is untouched. Keeps the step with the best held-out
    R@1 (the last when fewer than 10 phrases leave none to hold out)."""
    head = model.aligners[modality].head
    if head.native_map is None:
        raise ConfigError(f"the {modality!r} aligner has no native map")
    device = head.proj.weight.device
    n = len(natives)
    order = list(range(n))
    random.Random(cfg.seed).shuffle(order)
    n_val = round(n * cfg.val_fraction) if n >= 10 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    x, y = natives.float().to(device), F.normalize(targets.float(), dim=-1).to(device)
    scale = model.logit_scale.detach()
    weight = head.native_map.weight
    saved = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    weight.requires_grad_(True)
    before = _recall(model, modality, x[val_idx].cpu(), y[val_idx].cpu()) if n_val else None
    best, best_epoch, best_state = -math.inf, 0, copy.deepcopy(weight.detach())
    opt = torch.optim.AdamW([weight], lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    labels = torch.arange(n, device=device)
    try:
        with torch.enable_grad():
            for epoch in range(cfg.epochs):
                perm = torch.tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
                total = 0.0
                for s in range(0, len(perm), cfg.batch_size):
                    idx = perm[s : s + cfg.batch_size].to(device)
                    z = head.from_native(x[idx])
                    loss = info_nce(z, y[idx], labels[idx], labels[idx], scale)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                losses.append(total / max(len(perm), 1))
                score = (
                    _recall(model, modality, x[val_idx].cpu(), y[val_idx].cpu())
                    if n_val
                    else -losses[-1]
                )
                if score > best + 1e-9:
                    best, best_epoch, best_state = score, epoch + 1, copy.deepcopy(weight.detach())
    finally:
        with torch.no_grad():
            weight.copy_(best_state)
        for name, p in model.named_parameters():
            p.requires_grad_(saved.get(name, True))
    after = _recall(model, modality, x[val_idx].cpu(), y[val_idx].cpu()) if n_val else None
    log.info(
        "%s aligned through text: kept epoch %d of %d%s",
        modality,
        best_epoch,
        len(losses),
        f", held-out R@1 {before:.3f} -> {after:.3f}" if n_val else "",
    )
    return BridgeResult(
        modality, n, len(train_idx), n_val, len(losses), best_epoch, before, after, losses
    )
