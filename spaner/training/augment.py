"""Training-time augmentation of raw media: extra training items made from the few shots.

:func:`add_copies` re-encodes seeded random perturbations of each training clip or image with the
same frozen encoder and adds them to the training set with the label of their source; validation
and test data are never augmented. Copies are cached like any other feature, keyed by the source's
content, the seed, the copy index and the recipe version. (``TrainConfig.augment`` is something
else: token dropout on the frozen features during training.)

Audio (``TrainConfig.audio_augment`` copies by ``TrainConfig.audio_recipe``; recipes in
:mod:`spaner.training.audio_augment`): ``speech``, the default, draws a speed change (which also
shifts pitch, as in Kaldi-style speed perturbation), an optional telephone channel, optional
reverberation and optional noise at 10-30 dB SNR; other recipes add pitch changes that keep the
length, time shifts, background mixing (another training clip of a different label, or coloured
noise, at a random SNR) and gain. A mixed copy keeps its source's label; its background is part of
its cache key. Only audio encoders whose ``load`` returns a mono waveform tensor at
``encoder.sample_rate`` are augmented (the built-in log-mel and torchaudio encoders, Whisper);
others are left alone.

Images (``TrainConfig.image_augment``): affine warp, elastic deformation and stroke thickness, see
:mod:`spaner.training.image_augment`. Any image encoder whose ``load`` returns a Pillow image is augmented
(every built-in one).

Text (``TrainConfig.phrasings``): :func:`add_phrasings` adds phrasings of each training concept
("frog", "frogs", "a photo of a frog", "a dog barking"; :mod:`spaner.concepts.phrasings`) as extra
text items with its label, encoded by the frozen text encoder through the feature cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from spaner.encoders.base import Encoder, ItemTokens
from spaner.training.audio_augment import (
    AUDIO_RECIPES,
    SPEECH,
    AudioRecipe,
    augment_waveform,
    get_audio_recipe,
    pick_background,
    recipe_key,
    telephone_band,
)
from spaner.training.data import ModalityFeatures
from spaner.training.features import FeatureCache, content_hash, encode_items
from spaner.training.manifest import ManifestItem

__all__ = [
    "AUDIO_RECIPES",
    "augment_waveform",
    "telephone_band",
    "add_copies",
    "add_audio_copies",
    "add_phrasings",
    "RECIPE",
]

log = logging.getLogger(__name__)

#: the cache key of the ``speech`` recipe (kept for callers of this name)
RECIPE = recipe_key(SPEECH)


def _perturb(
    encoder: Encoder,
    raw: Any,
    rng: np.random.Generator,
    recipe: AudioRecipe,
    background: Any = None,
) -> Any | None:
    """One augmented copy of ``raw`` (what ``encoder.load`` returned), or None when this
    encoder's raw input is not something the recipes know (no augmentation)."""
    if encoder.modality == "audio":
        rate = getattr(encoder, "sample_rate", None)
        if rate is None or not isinstance(raw, torch.Tensor) or raw.ndim != 1:
            return None
        if not isinstance(background, torch.Tensor) or background.ndim != 1:
            background = None
        return augment_waveform(raw, int(rate), rng, recipe, background)
    if encoder.modality == "image":
        from PIL import Image

        from spaner.training.image_augment import augment_image

        return augment_image(raw, rng) if isinstance(raw, Image.Image) else None
    return None


#: augmented copies encoded per forward call (the encoders give an item the same tokens in any batch)
BATCH = 32


def add_copies(
    feats: ModalityFeatures,
    paths: list[str],
    encoder: Encoder,
    copies: int,
    seed: int,
    cache: FeatureCache | None = None,
    audio_recipe: str | AudioRecipe = "speech",
) -> ModalityFeatures:
    """``feats`` plus ``copies`` augmented copies of each file in ``paths`` (same order as
    ``feats``), for an audio or image ``encoder``; ``feats`` unchanged for other modalities.
    Audio copies follow ``audio_recipe`` (a name in :data:`AUDIO_RECIPES`, or a recipe); where it
    mixes in other clips, each copy's background is a file of another label, drawn per copy."""
    if copies < 1 or encoder.modality not in ("audio", "image"):
        return feats
    recipe = SPEECH
    if encoder.modality == "audio":
        recipe = get_audio_recipe(audio_recipe) if isinstance(audio_recipe, str) else audio_recipe
    recipe_id = recipe_key(recipe) if encoder.modality == "audio" else _image_recipe()
    mixes = encoder.modality == "audio" and recipe.mixes_clips
    items, labels, ids, concepts = (
        list(feats.items),
        feats.labels.tolist(),
        list(feats.ids),
        list(feats.concepts),
    )
    made: dict[str, ItemTokens] = {}
    pending: list[tuple[str, Any]] = []  # (cache key, raw copy), encoded BATCH at a time
    bases = [content_hash(encoder, path) for path in paths]
    loaded: dict[int, Any] = {}  # raw backgrounds (only when the recipe mixes in clips)

    def load(j: int) -> Any:
        if not mixes:
            return encoder.load(paths[j])
        if j not in loaded:
            loaded[j] = encoder.load(paths[j])
        return loaded[j]

    def flush() -> None:
        if not pending:
            return
        batch = encoder.forward(encoder.preprocess([raw for _, raw in pending]))
        for (key, _), item in zip(pending, batch.split(), strict=True):
            made[key] = item
            if cache is not None:
                cache.put(encoder, key, item)
        pending.clear()

    keys: list[list[str]] = []
    for j, base in enumerate(bases):
        digest = int(base[:8], 16)
        keys.append([])
        raw = None
        for k in range(copies):
            key, back = f"{base}-{recipe_id}-s{seed}-c{k}", None
            if mixes:  # the background is part of the copy's key
                back = pick_background(
                    j, labels[: len(paths)], np.random.default_rng([seed, k, digest, 1])
                )
                key += f"-bg{bases[back][:12]}" if back is not None else ""
            keys[-1].append(key)
            item = cache.get(encoder, key) if cache is not None else None
            if item is not None:
                made[key] = item
                continue
            if raw is None:
                raw = load(j)
            rng = np.random.default_rng([seed, k, digest])
            copy = _perturb(encoder, raw, rng, recipe, load(back) if back is not None else None)
            if copy is None:
                log.info(
                    "encoder %s does not load raw %s the recipes know; no augmentation",
                    encoder.name,
                    encoder.modality,
                )
                return feats
            pending.append((key, copy))
            if len(pending) >= BATCH:
                flush()
    flush()
    loaded.clear()
    for j, file_keys in enumerate(keys):
        for k, key in enumerate(file_keys):
            item = made[key]
            items.append(ItemTokens(item.tokens, item.native))
            labels.append(labels[j])
            ids.append(f"{ids[j]}#aug{k}")
            concepts.append(concepts[j])
    log.info(
        "%s augmentation: %d files -> %d training items", encoder.modality, len(paths), len(items)
    )
    return ModalityFeatures(items, torch.tensor(labels, dtype=torch.long), ids, concepts)


def _image_recipe() -> str:
    from spaner.training.image_augment import IMAGE_RECIPE

    return IMAGE_RECIPE


#: the name the audio copies had before images were augmented too
add_audio_copies = add_copies


def add_phrasings(
    feats: ModalityFeatures,
    items: Sequence[ManifestItem],
    encoder: Encoder,
    per_concept: int,
    cache: FeatureCache | None,
    label_ids: dict[str, int],
) -> ModalityFeatures:
    """``feats`` (text features of the training ``items``) plus up to ``per_concept`` phrasings
    of each training concept (:mod:`spaner.concepts.phrasings`) as extra text items with the
    concept's label in ``label_ids``, encoded by the frozen text ``encoder`` through ``cache``."""
    from spaner.concepts.phrasings import concept_phrasings
    from spaner.concepts.wordnet import load_wordnet

    if per_concept < 1:
        return feats
    wn = load_wordnet()
    table = concept_phrasings(items, per_concept, wn)
    texts, labels, ids, concepts = [], [], [], []
    for concept, extra in table.items():
        if concept not in label_ids:
            continue
        for k, text in enumerate(extra):
            texts.append(text)
            labels.append(label_ids[concept])
            ids.append(f"phrasing:{concept}#{k}")
            concepts.append(concept)
    if not texts:
        return feats
    encoded = encode_items(encoder, texts, cache, desc="encode phrasings")
    log.info(
        "phrasings: %d extra texts for %d concepts (%s)",
        len(texts),
        len(table),
        "with WordNet" if wn is not None else "without WordNet",
    )
    return ModalityFeatures(
        list(feats.items) + list(encoded),
        torch.cat([feats.labels, torch.tensor(labels, dtype=torch.long)]),
        list(feats.ids) + ids,
        list(feats.concepts) + concepts,
    )
