"""CLAP's audio front end, deterministic and batched: waveform -> log-mel windows for HTSAT.

It reproduces transformers' ``ClapFeatureExtractor`` (the same mel filters, window, hop and
dB scale, read from the checkpoint's ``preprocessor_config.json``), with three differences
that make an embedding a function of the clip alone:

* **No random truncation.** For a clip longer than the model's window (10 s), the extractor's
  ``rand_trunc`` takes one random 10-s crop; here the clip is cut into consecutive windows
  (:func:`split_windows`), each encoded, and their tokens joined. ``fusion`` checkpoints
  take three random crops (front, middle, back thirds) beside the whole clip shrunk to one
  window; here each crop starts at the middle of its third (:func:`fusion_mel`).
* **No random "longer" flag.** When no clip of a batch is longer than the window, the
  extractor marks a random one as longer, which sends it through the fusion branch: its
  embedding then depended on its batch. Here a clip is "longer" only when it is.
* **Torch, one STFT per batch.** The extractor's numpy STFT loops over frames in Python
  (~70 ms per 10-s window); :func:`log_mel` runs ``torch.stft`` on the whole batch and agrees
  with it to float32 rounding (``tests/encoders/test_clap.py``).

Short clips are repeated to fill the window (``repeatpad``, as the checkpoints were
trained); :attr:`Window.seconds` keeps how much of the window is the clip itself, so the
encoder can mask the tokens that only see its repetitions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Window",
    "split_windows",
    "fill_window",
    "log_mel",
    "fusion_mel",
    "window_mels",
    "tokens_for",
]


@dataclass
class Window:
    """One model window of a clip: ``samples`` (exactly the window's length, or a whole clip
    longer than it for a fusion window) and ``seconds`` of real audio in it."""

    samples: torch.Tensor
    seconds: float
    longer: bool = False


def fill_window(wave: torch.Tensor, length: int, padding: str) -> torch.Tensor:
    """``wave`` brought to ``length`` samples the extractor's way: ``repeatpad`` (repeat
    whole copies, then zeros), ``repeat`` (repeat and cut) or ``pad`` (zeros)."""
    n = wave.numel()
    if n >= length:
        return wave[:length]
    if padding == "repeat":
        wave = wave.repeat(length // n + 1)[:length]
    elif padding == "repeatpad":
        wave = wave.repeat(length // n)
    return F.pad(wave, (0, length - wave.numel()))


def split_windows(
    wave: torch.Tensor,
    rate: int,
    window_s: float,
    max_windows: int,
    fusion: bool,
    padding: str,
    min_tail_s: float = 1.0,
) -> list[Window]:
    """The windows one clip is encoded as.

    A clip up to ``window_s`` long is one window. A longer one is, for a ``fusion`` checkpoint,
    one fusion window over the whole clip (up to ``max_windows * window_s``); otherwise
    consecutive windows (at most ``max_windows``), the last one dropped when it holds less than
    ``min_tail_s`` of audio (a second is too little to say much about a long recording).
    """
    length = int(round(window_s * rate))
    wave = wave[: length * max_windows]
    if wave.numel() <= length:
        return [Window(fill_window(wave, length, padding), wave.numel() / rate)]
    if fusion:
        return [Window(wave, window_s, longer=True)]
    out = []
    for start in range(0, wave.numel(), length):
        piece = wave[start : start + length]
        if out and piece.numel() < min_tail_s * rate:
            break
        out.append(Window(fill_window(piece, length, padding), piece.numel() / rate))
    return out


@functools.lru_cache(maxsize=4)
def _hann(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float64).float()


def log_mel(
    waves: torch.Tensor, filters: np.ndarray | torch.Tensor, n_fft: int, hop: int
) -> torch.Tensor:
    """Log-mel power spectrograms in dB, ``[B, frames, mels]``, of waveforms ``[B, samples]``:
    the extractor's ``_np_extract_fbank_features`` (centred reflect-padded frames, periodic
    Hann window, power 2, ``filters`` ``[n_fft // 2 + 1, mels]``, floor 1e-10, 10 log10)."""
    fb = torch.as_tensor(filters, dtype=torch.float32, device=waves.device)
    x = F.pad(waves.float().unsqueeze(1), (n_fft // 2, n_fft // 2), mode="reflect").squeeze(1)
    spec = torch.stft(
        x,
        n_fft,
        hop,
        window=_hann(n_fft).to(waves.device),
        center=False,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # [B, freq, frames]
    mel = torch.einsum("bft,fm->btm", power, fb).clamp_min(1e-10)
    return 10.0 * torch.log10(mel)


def fusion_mel(mel: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """The four channels of a fusion window ``[4, chunk_frames, mels]`` from the mel of a whole
    clip longer than the window ``[frames, mels]``: the clip shrunk to one window, then crops
    from its front, middle and back thirds, each starting at the middle of the third's range
    of start frames (the extractor draws those starts at random)."""
    total = mel.shape[0]
    starts = np.array_split(np.arange(0, total - chunk_frames + 1), 3)
    picks = [int(r[len(r) // 2]) if len(r) else 0 for r in starts]
    crops = [mel[s : s + chunk_frames] for s in picks]
    shrunk = F.interpolate(
        mel[None, None], size=[chunk_frames, mel.shape[1]], mode="bilinear", align_corners=False
    )[0, 0]
    return torch.stack([shrunk, *crops])


def window_mels(
    windows: list[Window], extractor: Any, fusion: bool, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_features [W, channels, frames, mels], is_longer [W, 1])`` for HTSAT: one
    STFT over every full window, one per fusion window. ``extractor`` is the checkpoint's
    ``ClapFeatureExtractor`` (its filters, FFT size and hop)."""
    n_fft, hop = int(extractor.fft_window_size), int(extractor.hop_length)
    filters = extractor.mel_filters if fusion else extractor.mel_filters_slaney
    chunk_frames = int(extractor.nb_max_samples) // hop + 1
    out: list[torch.Tensor] = [torch.empty(0)] * len(windows)
    longer = [False] * len(windows)
    plain = [i for i, w in enumerate(windows) if not w.longer]
    if plain:
        waves = torch.stack([windows[i].samples for i in plain]).to(device)
        mels = log_mel(waves, filters, n_fft, hop)
        for i, m in zip(plain, mels, strict=True):
            out[i] = m.unsqueeze(0).expand(4, -1, -1) if fusion else m.unsqueeze(0)
    for i, w in enumerate(windows):
        if w.longer:
            mel = log_mel(w.samples.unsqueeze(0).to(device), filters, n_fft, hop)[0]
            # a clip within a hop of the window: the extractor repeats its mel, not longer
            longer[i] = mel.shape[0] != chunk_frames
            out[i] = fusion_mel(mel, chunk_frames) if longer[i] else mel.expand(4, -1, -1)
    flags = torch.tensor([[x] for x in longer], dtype=torch.bool, device=device)
    return torch.stack(out).contiguous(), flags


def tokens_for(seconds: float, window_s: float, frames: int) -> int:
    """How many of a window's ``frames`` time tokens see the clip itself (at least one)."""
    return max(1, min(frames, math.ceil(seconds / window_s * frames - 1e-6)))
