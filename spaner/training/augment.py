"""Training-time augmentation of raw media: extra training items made from the few shots.

:func:`add_copies` re-encodes seeded random perturbations of each training clip or image with the
same frozen encoder and adds them to the training set with the label of their source; validation
and test data are never augmented. Copies are cached like any other feature, keyed by the source's
content, the seed, the copy index and the recipe version. (``TrainConfig.augment`` is something
else: token dropout on the frozen features during training.)

Audio (``TrainConfig.audio_augment``): each copy draws a speed change (which also shifts pitch, as
in Kaldi-style speed perturbation), an optional telephone channel (resampled to 8 kHz and back,
300-3400 Hz band), optional reverberation (a synthetic exponentially decaying impulse response) and
optional noise at 10-30 dB SNR. Only audio encoders whose ``load`` returns a mono waveform tensor at
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
from spaner.training.data import ModalityFeatures
from spaner.training.features import FeatureCache, content_hash, encode_items
from spaner.training.manifest import ManifestItem

__all__ = [
    "augment_waveform",
    "telephone_band",
    "add_copies",
    "add_audio_copies",
    "add_phrasings",
    "RECIPE",
]

log = logging.getLogger(__name__)

RECIPE = "audio-aug-v1"


def telephone_band(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """The clip as a telephone line carries it: 8 kHz sampling, 300-3400 Hz, back at ``rate``."""
    import torchaudio.functional as AF

    low = AF.resample(wave, rate, 8000)
    low = AF.highpass_biquad(low, 8000, 300.0)
    low = AF.lowpass_biquad(low, 8000, 3400.0)
    return AF.resample(low, 8000, rate)[: wave.numel()]


def augment_waveform(wave: torch.Tensor, rate: int, rng: np.random.Generator) -> torch.Tensor:
    """One random perturbation of a mono waveform (see the module docstring)."""
    import torchaudio.functional as AF

    x = wave.float()
    speed = float(
        rng.choice([0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15])
    )  # rates with a large gcd resample fast
    if (
        speed != 1.0
    ):  # resampling to rate*speed and playing at rate changes tempo and pitch together
        x = AF.resample(x, int(round(rate * speed)), rate)
    if rng.random() < 0.3:
        x = telephone_band(x, rate)
    if rng.random() < 0.3:
        t60 = float(rng.uniform(0.1, 0.5))
        n = int(t60 * rate)
        ir = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) * torch.exp(
            -6.9 * torch.arange(n, dtype=torch.float32) / n
        )
        ir[0] = 1.0
        x = AF.fftconvolve(x, ir / ir.norm())[: x.numel()]
    if rng.random() < 0.5:
        snr_db = float(rng.uniform(10, 30))
        power = x.pow(2).mean().clamp_min(1e-10)
        noise = torch.from_numpy(rng.standard_normal(x.numel()).astype(np.float32))
        x = x + noise * torch.sqrt(power / (10 ** (snr_db / 10)))
    peak = float(x.abs().max())
    return x / peak * 0.9 if peak > 1.0 else x


def _perturb(encoder: Encoder, raw: Any, rng: np.random.Generator) -> Any | None:
    """One augmented copy of ``raw`` (what ``encoder.load`` returned), or None when this
    encoder's raw input is not something the recipes know (no augmentation)."""
    if encoder.modality == "audio":
        rate = getattr(encoder, "sample_rate", None)
        if rate is None or not isinstance(raw, torch.Tensor) or raw.ndim != 1:
            return None
        return augment_waveform(raw, int(rate), rng)
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
) -> ModalityFeatures:
    """``feats`` plus ``copies`` augmented copies of each file in ``paths`` (same order as
    ``feats``), for an audio or image ``encoder``; ``feats`` unchanged for other modalities."""
    if copies < 1 or encoder.modality not in ("audio", "image"):
        return feats
    recipe = RECIPE if encoder.modality == "audio" else _image_recipe()
    items, labels, ids, concepts = (
        list(feats.items),
        feats.labels.tolist(),
        list(feats.ids),
        list(feats.concepts),
    )
    made: dict[str, ItemTokens] = {}
    pending: list[tuple[str, Any]] = []  # (cache key, raw copy), encoded BATCH at a time

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
    for path in paths:
        base = content_hash(encoder, path)
        keys.append([f"{base}-{recipe}-s{seed}-c{k}" for k in range(copies)])
        raw = None
        for k, key in enumerate(keys[-1]):
            item = cache.get(encoder, key) if cache is not None else None
            if item is not None:
                made[key] = item
                continue
            if raw is None:
                raw = encoder.load(path)
            digest = int(base[:8], 16)
            copy = _perturb(encoder, raw, np.random.default_rng([seed, k, digest]))
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
