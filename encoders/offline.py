"""Encoders that need no downloaded weights (the ``offline`` profile).

* :class:`RandomConvImageEncoder`: a fixed, seeded, random 2-layer conv net over a small
  resized image; the 8x8 grid of its feature map are the tokens. Random conv features are
  a strong, training-free image representation at this scale (see README, "Profiles").
* :class:`LogMelAudioEncoder`: log-mel frames, normalised per utterance, stacked in
  groups of ``stack`` consecutive frames; each stacked frame is a token.
* :class:`RandConvAudioEncoder`: the log-mel spectrogram with leading/trailing silence
  trimmed, normalised per bin over the voiced frames, stretched to a fixed number of
  frames and passed through a fixed, seeded, random 2-layer conv net; each time column of
  its feature map is a token. Every statistic is per utterance; nothing is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Encoder, TokenBatch
from .decode import RawInput, load_audio_mono, load_image

__all__ = ["RandomConvImageEncoder", "LogMelAudioEncoder", "RandConvAudioEncoder", "trim_silence"]


def normalise_bins(spec: torch.Tensor) -> torch.Tensor:
    """``[frames, bins]`` with each bin scaled to zero mean and unit variance over the frames."""
    return (spec - spec.mean(0)) / (spec.std(0, unbiased=False) + 1e-5)


def random_conv_net(
    in_channels: int, channels: Sequence[int], seed: int, weights: str | None = None
) -> nn.Sequential:
    """A frozen stack of [3x3 conv, ReLU, 2x2 average pool] blocks, seeded (the global RNG is
    left untouched), or loaded from a safetensors ``weights`` file."""
    layers: list[nn.Module] = []
    in_ch = in_channels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for out_ch in channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
            in_ch = out_ch
    net = nn.Sequential(*layers).eval()
    if weights is not None:
        from .torchaudio_encoder import load_state_dict_file

        net.load_state_dict(load_state_dict_file(weights))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class RandomConvImageEncoder(Encoder):
    """Tokens ``[B, (size/4)², channels[-1]]`` from a frozen random conv net (seeded)."""

    modality = "image"
    input_kind = "file"
    bf16_capable = (
        False  # a few thousand multiply-adds per pixel: bf16 buys no speed, only rounding
    )

    def __init__(
        self,
        name: str,
        size: int = 32,
        channels: Sequence[int] = (32, 64),
        seed: int = 0,
        grayscale: bool = True,
        weights: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.name = name
        self.size = int(size)
        self.grayscale = bool(grayscale)
        self._args = {
            "size": size,
            "channels": list(channels),
            "seed": seed,
            "grayscale": grayscale,
        }
        self.net = random_conv_net(1 if grayscale else 3, channels, seed, weights)
        self.width = int(channels[-1])
        self.weights = str(weights) if weights else f"random (seed {seed})"
        self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.net]

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def load(self, source: RawInput, name: str | None = None):
        return load_image(source, self.limits, name)

    def preprocess(self, raws: Sequence[Any]) -> torch.Tensor:
        from PIL import Image

        arrays = []
        for img in raws:
            img = img.convert("L" if self.grayscale else "RGB").resize(
                (self.size, self.size), Image.BILINEAR
            )
            a = np.asarray(img, dtype=np.float32) / 255.0
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            a = (a - a.mean()) / (a.std() + 1e-6)  # per-image contrast normalisation
            arrays.append(a)
        return torch.from_numpy(np.stack(arrays)).to(self.device)

    def _forward(self, batch: torch.Tensor) -> TokenBatch:
        fmap = self.net(batch)  # [B, C, h, w]
        tokens = fmap.flatten(2).transpose(1, 2).contiguous()
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TokenBatch(tokens, mask, None)


class LogMelAudioEncoder(Encoder):
    """Log-mel frames (25 ms window, 10 ms hop) stacked by ``stack``: width ``n_mels * stack``."""

    modality = "audio"
    input_kind = "file"
    bf16_capable = False  # an FFT front end: stays fp32

    def __init__(
        self,
        name: str,
        sample_rate: int = 16000,
        n_mels: int = 40,
        stack: int = 3,
        max_seconds: float = 30.0,
        weights: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        import torchaudio

        self.name = name
        self.sample_rate = int(sample_rate)
        self.stack = int(stack)
        self.max_seconds = float(max_seconds)
        self._args = {
            "sample_rate": sample_rate,
            "n_mels": n_mels,
            "stack": stack,
            "max_seconds": max_seconds,
        }
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=int(0.025 * sample_rate),
            hop_length=int(0.010 * sample_rate),
            n_mels=n_mels,
        ).eval()
        self.width = int(n_mels * stack)
        self.weights = "none (fixed transform)"
        self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.mel]

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def load(self, source: RawInput, name: str | None = None) -> torch.Tensor:
        mono = load_audio_mono(source, self.sample_rate, self.limits, name)
        return mono[: int(self.max_seconds * self.sample_rate)]

    def preprocess(self, raws: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [w.to(self.device) for w in raws]

    def _forward(self, waves: list[torch.Tensor]) -> TokenBatch:
        items = []
        for w in waves:
            spec = torch.log(self.mel(w) + 1e-6).T  # [frames, n_mels]
            spec = normalise_bins(spec)  # per-utterance normalisation
            frames = spec.shape[0] - spec.shape[0] % self.stack or spec.shape[0]
            spec = spec[:frames]
            if spec.shape[0] < self.stack:
                spec = torch.nn.functional.pad(spec, (0, 0, 0, self.stack - spec.shape[0]))
            items.append(spec.reshape(-1, self.width))
        longest = max(t.shape[0] for t in items)
        tokens = items[0].new_zeros(len(items), longest, self.width)
        mask = torch.zeros(len(items), longest, dtype=torch.bool, device=tokens.device)
        for i, t in enumerate(items):
            tokens[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return TokenBatch(tokens, mask, None)


def trim_silence(logmel: torch.Tensor, top_db: float) -> torch.Tensor:
    """Drop leading and trailing frames of ``logmel`` ``[frames, n_mels]`` (natural-log mel
    power) whose energy is more than ``top_db`` below the loudest frame. Frames between the
    first and last voiced frame are kept; a clip with no frame above the threshold is
    returned whole."""
    energy = torch.logsumexp(logmel, dim=1)  # log of the frame's total mel power
    voiced = torch.nonzero(energy > energy.max() - top_db * math.log(10.0) / 10.0).flatten()
    if voiced.numel() == 0:
        return logmel
    return logmel[int(voiced[0]) : int(voiced[-1]) + 1]


class RandConvAudioEncoder(LogMelAudioEncoder):
    """Tokens ``[B, frames/2^L, channels[-1] * n_mels/2^L]`` from a frozen random conv net over
    the silence-trimmed, per-utterance normalised, time-normalised log-mel spectrogram.

    Chosen over plain log-mel frames by a few-shot probe on held-out voices (README,
    "Profiles"; BENCHMARKS.md, "Digits"): trimming stops the normalisation statistics from
    being dominated by silence, the fixed frame count removes speaking rate, and the random
    conv features pool local time-frequency patterns that are less tied to one voice's pitch.
    """

    def __init__(
        self,
        name: str,
        sample_rate: int = 16000,
        n_mels: int = 40,
        trim_db: float = 25.0,
        frames: int = 32,
        channels: Sequence[int] = (32, 64),
        seed: int = 0,
        max_seconds: float = 30.0,
        weights: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            name,
            sample_rate=sample_rate,
            n_mels=n_mels,
            stack=1,
            max_seconds=max_seconds,
            device=device,
        )
        down = 2 ** len(channels)
        if n_mels % down or frames % down or frames < down:
            raise ValueError(
                f"n_mels ({n_mels}) and frames ({frames}) must be multiples of 2**len(channels) = {down}"
            )
        self.trim_db = float(trim_db)
        self.frames = int(frames)
        self._args = {
            "sample_rate": sample_rate,
            "n_mels": n_mels,
            "trim_db": trim_db,
            "frames": frames,
            "channels": list(channels),
            "seed": seed,
            "max_seconds": max_seconds,
        }
        self.net = random_conv_net(1, channels, seed, weights)
        self.width = int(channels[-1] * n_mels // down)
        self.weights = (
            str(weights) if weights else f"none: fixed transform + random conv (seed {seed})"
        )
        self.to(device)

    def modules(self) -> list[nn.Module]:
        net = getattr(self, "net", None)  # the base class moves its modules before the net exists
        return [self.mel] + ([net] if net is not None else [])

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """The conv net's input for one clip: ``[frames, n_mels]``."""
        spec = torch.log(self.mel(wave) + 1e-6).T  # [frames, n_mels]
        spec = trim_silence(spec, self.trim_db)
        spec = normalise_bins(spec)  # per-utterance, voiced frames only
        return torch.nn.functional.interpolate(
            spec.T[None], size=self.frames, mode="linear", align_corners=False
        )[0].T

    def _forward(self, waves: list[torch.Tensor]) -> TokenBatch:
        specs = torch.stack([self.spectrogram(w) for w in waves])  # [B, frames, n_mels]
        fmap = self.net(specs.transpose(1, 2)[:, None])  # [B, C, n_mels/down, frames/down]
        tokens = fmap.permute(0, 3, 1, 2).flatten(2).contiguous()  # one token per time column
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TokenBatch(tokens, mask, None)
