"""Training-time augmentation of raw audio, for voices, rooms and channels the few shots never show.

Each augmented copy of a training clip draws, from a seeded generator, a speed change (which
also shifts pitch, as in Kaldi-style speed perturbation), an optional telephone channel
(resampled to 8 kHz and back, 300-3400 Hz band), optional reverberation (a synthetic
exponentially decaying impulse response) and optional noise at 10-30 dB SNR. The copies
are encoded by the same frozen encoder and added to the training set with the label of
their source; validation and test data are never augmented. Copies are cached like any
other feature, keyed by the source's content, the copy index and the recipe version.

Only audio encoders whose ``load`` returns a mono waveform tensor at ``encoder.sample_rate``
are augmented (the built-in log-mel and torchaudio encoders); others are left alone.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from spaner.encoders.base import Encoder, ItemTokens

from .data import ModalityFeatures
from .features import FeatureCache, content_hash

__all__ = ["augment_waveform", "telephone_band", "add_audio_copies", "RECIPE"]

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


def add_audio_copies(
    feats: ModalityFeatures,
    paths: list[str],
    encoder: Encoder,
    copies: int,
    seed: int,
    cache: FeatureCache | None = None,
) -> ModalityFeatures:
    """``feats`` plus ``copies`` augmented copies of each clip in ``paths`` (same order as ``feats``)."""
    rate = getattr(encoder, "sample_rate", None)
    if copies < 1 or encoder.modality != "audio" or rate is None:
        return feats
    items, labels, ids, concepts = (
        list(feats.items),
        feats.labels.tolist(),
        list(feats.ids),
        list(feats.concepts),
    )
    for j, path in enumerate(paths):
        base = content_hash(encoder, path)
        wave = None
        for k in range(copies):
            key = f"{base}-{RECIPE}-s{seed}-c{k}"
            item = cache.get(encoder, key) if cache is not None else None
            if item is None:
                if wave is None:
                    wave = encoder.load(path)
                    if not isinstance(wave, torch.Tensor) or wave.ndim != 1:
                        log.info(
                            "encoder %s does not load a mono waveform; no audio augmentation",
                            encoder.name,
                        )
                        return feats
                digest = int(base[:8], 16)
                rng = np.random.default_rng([seed, k, digest])
                item = encoder.forward(
                    encoder.preprocess([augment_waveform(wave, int(rate), rng)])
                ).split()[0]
                if cache is not None:
                    cache.put(encoder, key, item)
            items.append(ItemTokens(item.tokens, item.native))
            labels.append(labels[j])
            ids.append(f"{ids[j]}#aug{k}")
            concepts.append(concepts[j])
    log.info("audio augmentation: %d clips -> %d training items", len(paths), len(items))
    return ModalityFeatures(items, torch.tensor(labels, dtype=torch.long), ids, concepts)
