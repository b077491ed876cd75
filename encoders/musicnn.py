"""musicnn (Pons and Serra, 2019) in torch: a music tagger's 50 tags for any clip.

The network is ``MTT_musicnn`` of the ``musicnn`` wheel (ISC licence; trained on
MagnaTagATune): a front end of timbral (7 x 38 and 7 x 67 mel-frequency) and temporal (128,
64 and 32 frames) convolutions max-pooled over frequency, three 1-D convolutions with residual
connections, max and mean pooling over time, two dense layers. Its weights are converted once
from the TensorFlow checkpoint by ``encoders/convert_musicnn.py`` (no TensorFlow needed) into
safetensors with torch's layouts (the names below).

Input: musicnn's log-mel, ``log10(10000 * mel + 1)`` of a 16-kHz waveform (512-point FFT, hop
256, 96 Slaney mel bands, power), computed in float32 (the original casts the mel to float16
first, which overflows to ``inf`` on loud clips), in 3-s patches (187 frames); a shorter clip
is repeated to fill one patch, as the model was trained.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MTT_TAGS", "Musicnn", "musicnn_log_mel", "patches", "tf_to_torch", "PATCH_FRAMES"]

SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 512, 256, 96
PATCH_FRAMES = 187  # 3 s
_EPS = 1e-3  # tf.layers.batch_normalization's epsilon

#: MagnaTagATune's 50 tags in the output order
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

_FILTERS: dict[str, torch.Tensor] = {}


def _mel_filters() -> torch.Tensor:
    """librosa's default mel filters (Slaney scale and area normalisation) ``[96, 257]``."""
    if "mel" not in _FILTERS:
        from transformers.audio_utils import mel_filter_bank

        bank = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2,
            num_mel_filters=N_MELS,
            min_frequency=0.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        _FILTERS["mel"] = torch.from_numpy(np.asarray(bank, dtype=np.float32)).T.contiguous()
    return _FILTERS["mel"]


def musicnn_log_mel(wave: torch.Tensor) -> torch.Tensor:
    """``[frames, 96]`` log-mel of a mono 16-kHz waveform, as musicnn's extractor computes it
    (a centred STFT, reflection-padded) but in float32 throughout."""
    wave = wave.float()
    if wave.numel() < N_FFT:
        wave = F.pad(wave, (0, N_FFT - wave.numel()))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(wave, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)  # fmt: skip
    mel = _mel_filters() @ stft.abs().pow(2)  # [96, frames]
    return torch.log10(10000.0 * mel + 1.0).T.contiguous()


def patches(spec: torch.Tensor, hop: int = PATCH_FRAMES) -> torch.Tensor:
    """``[n, 187, 96]`` patches of a ``[frames, 96]`` log-mel, ``hop`` frames apart; a clip
    shorter than one patch is repeated to fill it (the model's "repeat-pad")."""
    if spec.shape[0] < PATCH_FRAMES:
        spec = spec.repeat(math.ceil(PATCH_FRAMES / max(1, spec.shape[0])), 1)[:PATCH_FRAMES]
    starts = range(0, spec.shape[0] - PATCH_FRAMES + 1, hop)
    return torch.stack([spec[s : s + PATCH_FRAMES] for s in starts])


def _bn(n: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(n, eps=_EPS)


class Musicnn(nn.Module):
    """``MTT_musicnn``: ``forward(x [B, 187, 96]) -> (logits [B, 50], penultimate [B, 200])``."""

    def __init__(self, n_classes: int = 50, midend: int = 64, backend: int = 200) -> None:
        super().__init__()
        self.bn_input = nn.BatchNorm2d(1, eps=_EPS)
        self.timbral = nn.ModuleList(
            [nn.Conv2d(1, 204, (7, int(0.4 * N_MELS))), nn.Conv2d(1, 204, (7, int(0.7 * N_MELS)))]
        )
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
        # batch norm before the max over frequency, as in TF (a negative scale turns max to min)
        self.front_bn = nn.ModuleList([nn.BatchNorm2d(n, eps=_EPS) for n in (204, 204, 51, 51, 51)])
        front = 204 * 2 + 51 * 3
        self.mid = nn.ModuleList([nn.Conv1d(front, midend, 7)] + [nn.Conv1d(midend, midend, 7) for _ in range(2)])  # fmt: skip
        self.mid_bn = nn.ModuleList([_bn(midend) for _ in range(3)])
        pooled = 2 * (front + 3 * midend)
        self.pool_bn = _bn(pooled)
        self.dense = nn.Linear(pooled, backend)
        self.dense_bn = _bn(backend)
        self.out = nn.Linear(backend, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.bn_input(x[:, None])  # [B, 1, T, F]
        feats = []
        padded = F.pad(x, (0, 0, 3, 3))
        for conv, bn in zip(self.timbral, self.front_bn[:2], strict=True):
            feats.append(bn(F.relu(conv(padded))).amax(dim=3))  # [B, 204, T]
        for conv, bn in zip(self.temporal, self.front_bn[2:], strict=True):
            k = conv.kernel_size[0]  # TF "same": the extra frame of an even kernel goes after
            y = F.relu(conv(F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))))
            feats.append(bn(y).amax(dim=3))  # [B, 51, T]
        front = torch.cat(feats, dim=1)  # [B, 561, T]
        layers, h = [front], front
        for i, (conv, bn) in enumerate(zip(self.mid, self.mid_bn, strict=True)):
            y = bn(F.relu(conv(F.pad(h, (3, 3)))))
            h = y if i == 0 else y + h
            layers.append(h)
        mid = torch.cat(layers, dim=1)  # [B, 753, T]
        # TF flattens [753, 2] (max, mean per feature): interleave them the same way
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return self.out(penultimate), penultimate


def tf_to_torch(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The state dict of :class:`Musicnn` from the TensorFlow variable names of
    ``MTT_musicnn`` (creation order: input BN, then each front-end conv and its BN, the mid-end
    convs and BNs, the pooled BN, dense, dense BN, output)."""
    convs = [f"conv2d{'' if i == 0 else f'_{i}'}" for i in range(8)]
    bns = [f"batch_normalization{'' if i == 0 else f'_{i}'}" for i in range(11)]
    targets = (
        ["bn_input"] + [f"front_bn.{i}" for i in range(5)] + [f"mid_bn.{i}" for i in range(3)]
        + ["pool_bn", "dense_bn"]
    )  # fmt: skip
    layers = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)]
    layers += [f"mid.{i}" for i in range(3)]
    out: dict[str, torch.Tensor] = {}
    for tf_name, name in zip(convs, layers, strict=True):
        kernel = weights[f"{tf_name}/kernel"]  # [kh, kw, in, out]
        if name.startswith("mid."):  # a [7, width] kernel over [time, features]: a 1-D conv
            out[f"{name}.weight"] = torch.from_numpy(kernel[:, :, 0, :].transpose(2, 1, 0).copy())
        else:
            out[f"{name}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        out[f"{name}.bias"] = torch.from_numpy(weights[f"{tf_name}/bias"])
    for tf_name, name in zip(bns, targets, strict=True):
        for tf_key, key in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")):  # fmt: skip
            out[f"{name}.{key}"] = torch.from_numpy(weights[f"{tf_name}/{tf_key}"])
        out[f"{name}.num_batches_tracked"] = torch.tensor(0)
    for tf_name, name in (("dense", "dense"), ("dense_1", "out")):
        out[f"{name}.weight"] = torch.from_numpy(weights[f"{tf_name}/kernel"].T.copy())
        out[f"{name}.bias"] = torch.from_numpy(weights[f"{tf_name}/bias"])
    return out
