"""From a manifest to training/evaluation features: splits, few-shot sampling, labels.

* Splits come from the manifest's ``split`` field when present; otherwise items are split
  by a seeded hash of their id (``test_fraction`` test, the rest train).
* Validation is the manifest's ``val`` split, else ``val_fraction`` of the training pool
  left over after sampling shots (never test data).
* ``shots=K`` picks K items per concept *per modality*; ``fraction=F`` keeps a seeded
  fraction of training lines (pairs).
* Labels (what counts as a positive) are concepts when the manifest has them, else the
  manifest line (paired items).
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from spaner.encoders.base import Encoder, ItemTokens
from spaner.errors import ConfigError, ManifestError
from spaner.training.features import FeatureCache, encode_items
from spaner.training.manifest import Manifest, ManifestItem

__all__ = [
    "Splits",
    "split_manifest",
    "sample_few_shot",
    "ModalityFeatures",
    "FeatureSet",
    "build_features",
]


@dataclass
class Splits:
    train: list[ManifestItem]
    val: list[ManifestItem]
    test: list[ManifestItem]
    relevance: str  # "concept" or "paired"


def _hash_unit(text: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _label(item: ManifestItem, relevance: str) -> str:
    return item.concept if relevance == "concept" and item.concept is not None else f"id:{item.id}"


def split_manifest(manifest: Manifest, seed: int = 0, test_fraction: float = 0.2) -> Splits:
    """Split items into train/val/test (val may be empty here; see :func:`sample_few_shot`)."""
    relevance = "concept" if manifest.has_concepts else "paired"
    if relevance == "concept" and any(i.concept is None for i in manifest.items):
        missing = next(i for i in manifest.items if i.concept is None)
        raise ManifestError(
            f"{manifest.path}:{missing.line}: some lines have a 'concept' and this one has none"
        )
    train, val, test = [], [], []
    for item in manifest.items:
        split = item.split
        if split is None:
            split = "test" if _hash_unit(item.id, seed) < test_fraction else "train"
        {"train": train, "val": val, "test": test}[split].append(item)
    if not train:
        raise ManifestError(f"{manifest.path}: no training items (check the 'split' fields)")
    return Splits(train, val, test, relevance)


def sample_few_shot(
    splits: Splits,
    shots: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
) -> tuple[list[ManifestItem], list[ManifestItem]]:
    """Pick the few-shot training set and a validation set from the training pool."""
    rng = random.Random(seed)
    pool = list(splits.train)
    rng.shuffle(pool)
    if shots is not None:
        if splits.relevance != "concept":
            raise ConfigError(
                "--shots needs a manifest with 'concept' fields; use --fraction for paired data"
            )
        by_concept: dict[str, list[ManifestItem]] = defaultdict(list)
        for item in pool:
            by_concept[item.concept].append(item)  # type: ignore[index]
        chosen = []
        for concept in sorted(by_concept):
            counts: dict[str, int] = defaultdict(int)
            for item in by_concept[concept]:
                if any(counts[m] < shots for m in item.fields):
                    chosen.append(item)
                    for m in item.fields:
                        counts[m] += 1
    elif fraction is not None:
        chosen = pool[: max(1, round(len(pool) * fraction))]
    else:
        chosen = pool
    chosen_ids = {i.id for i in chosen}
    if splits.val:
        val = list(splits.val)
    else:
        rest = [i for i in pool if i.id not in chosen_ids]
        if not rest:  # everything was chosen: hold out a slice of it, stratified by label
            n = max(1, round(len(chosen) * val_fraction)) if len(chosen) > 4 else 0
            val = _stratified(chosen, n, splits.relevance, rng)
            val_ids = {i.id for i in val}
            chosen = [i for i in chosen if i.id not in val_ids]
        else:
            val = rest[: max(1, round(len(pool) * val_fraction))]
    return chosen, val


def _stratified(
    items: list[ManifestItem], n: int, relevance: str, rng: random.Random
) -> list[ManifestItem]:
    """``n`` items taken round-robin across labels (one per concept in turn), in seeded order."""
    groups: dict[str, list[ManifestItem]] = defaultdict(list)
    for item in items:
        groups[_label(item, relevance)].append(item)
    order = sorted(groups)
    rng.shuffle(order)
    picked: list[ManifestItem] = []
    while len(picked) < n and any(groups.values()):
        for key in order:
            if groups[key] and len(picked) < n:
                picked.append(groups[key].pop(rng.randrange(len(groups[key]))))
    return picked


@dataclass
class ModalityFeatures:
    items: list[ItemTokens]
    labels: torch.Tensor  # int64 [N]
    ids: list[str]
    concepts: list[str | None]

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class FeatureSet:
    """Frozen features of a set of manifest items, per modality, with integer labels."""

    modalities: dict[str, ModalityFeatures] = field(default_factory=dict)
    relevance: str = "concept"

    def __len__(self) -> int:
        return sum(len(m) for m in self.modalities.values())


def build_features(
    items: Sequence[ManifestItem],
    encoders: Mapping[str, Encoder],
    relevance: str,
    label_ids: dict[str, int],
    cache: FeatureCache | None = None,
    batch_size: int = 32,
) -> FeatureSet:
    """Encode every item of every modality in ``encoders`` (other modalities are ignored).

    ``label_ids`` maps label strings to ints and is extended in place, so several sets
    built with the same dict share label numbering.
    """
    fs = FeatureSet(relevance=relevance)
    for modality, encoder in encoders.items():
        chosen = [i for i in items if modality in i.fields]
        if not chosen:
            continue
        feats = encode_items(
            encoder,
            [i.fields[modality] for i in chosen],
            cache,
            batch_size,
            desc=f"encode {modality}",
        )
        labels = [label_ids.setdefault(_label(i, relevance), len(label_ids)) for i in chosen]
        fs.modalities[modality] = ModalityFeatures(
            feats,
            torch.tensor(labels, dtype=torch.long),
            [i.id for i in chosen],
            [i.concept for i in chosen],
        )
    return fs
