"""Training-time augmentation of raw audio: named recipes of seeded waveform perturbations.

A recipe (:class:`AudioRecipe`) gives the chance and range of each perturbation; a copy draws them
in this order from a seeded generator, each only where its chance is above zero, so adding a
perturbation to a recipe never changes what the others draw in a recipe without it:

* **speed** (``speeds``): resampled to ``rate * speed`` and played at ``rate``: tempo and pitch
  change together and the clip gets shorter or longer (Kaldi-style speed perturbation);
* **pitch** (``pitch_p``, ``pitch_semitones``): the same resampling by a ratio drawn in
  semitones, then cut or padded with silence at the end to the clip's length;
* **shift** (``shift_p``, ``shift_max``, ``shift_circular``): the clip moved in time by up to a
  share of its length, rolled round (circular) or with silence coming in;
* **mix** (``mix_p``, ``mix_snr_db``, ``mix_clip``): a background added at a random SNR (the clip
  stays the louder): another training clip of a different concept (chosen by the caller,
  :func:`pick_background`; tiled or cut to length from a random offset), else white, pink or
  brown noise;
* **telephone** (``telephone_p``): 8 kHz, 300-3400 Hz, back at ``rate``;
* **reverb** (``reverb_p``): a synthetic exponentially decaying impulse response (T60 0.1-0.5 s);
* **noise** (``noise_p``, ``noise_snr_db``): white noise at a random SNR;
* **gain** (``gain_p``, ``gain_db``): louder or softer by up to ``gain_db``.

A copy whose peak passes 1 is scaled to a 0.9 peak. Every perturbation but speed keeps the length
and the rate. Resampling ratios are rounded so the source rate is a multiple of 50 Hz (a small
polyphase filter: cheap). ``speech`` (the default, cache key ``audio-aug-v1``) is the recipe
audio was always augmented with; ``sounds`` adds what fits environmental sounds, as measured on
the validation split of ``benchmarks/sounds.py`` (BENCHMARKS.md "Sounds").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spaner.errors import ConfigError

__all__ = [
    "AudioRecipe",
    "AUDIO_RECIPES",
    "SPEECH",
    "SPEECH_KEY",
    "register_audio_recipe",
    "get_audio_recipe",
    "recipe_key",
    "augment_waveform",
    "telephone_band",
    "change_pitch",
    "time_shift",
    "mix_at_snr",
    "coloured_noise",
    "pick_background",
]

#: the cache key of the ``speech`` recipe (what every audio copy was before recipes had names)
SPEECH_KEY = "audio-aug-v1"


@dataclass(frozen=True)
class AudioRecipe:
    """Chances (``*_p``) and ranges of each perturbation (module docstring); 0 turns one off."""

    speeds: tuple[float, ...] = (0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15)
    pitch_p: float = 0.0
    pitch_semitones: float = 2.0  # largest change either way
    shift_p: float = 0.0
    shift_max: float = 0.3  # share of the clip's length
    shift_circular: float = 0.5  # chance a shift rolls round (else silence comes in)
    mix_p: float = 0.0
    mix_snr_db: tuple[float, float] = (5.0, 20.0)
    mix_clip: float = 0.7  # chance a mix takes another training clip (else coloured noise)
    telephone_p: float = 0.3
    reverb_p: float = 0.3
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    gain_p: float = 0.0
    gain_db: float = 6.0

    @property
    def mixes_clips(self) -> bool:
        return self.mix_p > 0 and self.mix_clip > 0


SPEECH = AudioRecipe()

#: registered recipes by name (``TrainConfig.audio_recipe``)
AUDIO_RECIPES: dict[str, AudioRecipe] = {}


def register_audio_recipe(name: str, recipe: AudioRecipe, overwrite: bool = False) -> None:
    """Make ``recipe`` known as ``name`` (``TrainConfig.audio_recipe``)."""
    if name in AUDIO_RECIPES and not overwrite and AUDIO_RECIPES[name] != recipe:
        raise ConfigError(f"audio recipe {name!r} is already registered")
    AUDIO_RECIPES[name] = recipe


def get_audio_recipe(name: str) -> AudioRecipe:
    try:
        return AUDIO_RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown audio recipe {name!r}; known: {', '.join(sorted(AUDIO_RECIPES))}"
        ) from None


def recipe_key(recipe: AudioRecipe) -> str:
    """The feature-cache key part of ``recipe``: its content, so an edited recipe re-encodes."""
    if recipe == SPEECH:
        return SPEECH_KEY
    blob = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    return "audio-aug-" + hashlib.sha1(blob.encode()).hexdigest()[:12]


def telephone_band(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """The clip as a telephone line carries it: 8 kHz sampling, 300-3400 Hz, back at ``rate``."""
    import torchaudio.functional as AF

    low = AF.resample(wave, rate, 8000)
    low = AF.highpass_biquad(low, 8000, 300.0)
    low = AF.lowpass_biquad(low, 8000, 3400.0)
    return AF.resample(low, 8000, rate)[: wave.numel()]


def _source_rate(rate: int, ratio: float) -> int:
    """``rate * ratio`` rounded to a multiple of 50 Hz (when ``rate`` is one: a small filter)."""
    step = 50 if rate % 50 == 0 else 1
    return max(step, int(round(rate * ratio / step)) * step)


def change_pitch(wave: torch.Tensor, rate: int, ratio: float) -> torch.Tensor:
    """Every frequency times ``ratio`` (to the 50-Hz rounding of ``rate * ratio``): resampled as
    a tape played faster or slower, then cut or padded with silence to the same length."""
    import torchaudio.functional as AF

    src = _source_rate(rate, ratio)
    if src == rate:
        return wave
    out = AF.resample(wave, src, rate)
    n = wave.numel()
    if out.numel() >= n:
        return out[:n]
    return torch.cat([out, out.new_zeros(n - out.numel())])


def time_shift(wave: torch.Tensor, samples: int, circular: bool) -> torch.Tensor:
    """``wave`` moved ``samples`` later (earlier when negative): rolled round, or silence in."""
    n = wave.numel()
    if samples == 0 or n == 0:
        return wave
    if circular:
        return torch.roll(wave, samples)
    out = wave.new_zeros(n)
    if abs(samples) >= n:
        return out
    if samples > 0:
        out[samples:] = wave[: n - samples]
    else:
        out[: n + samples] = wave[-samples:]
    return out


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> torch.Tensor:
    """Unit-power noise whose power falls as ``f ** -exponent`` (0 white, 1 pink, 2 brown)."""
    white = rng.standard_normal(n).astype(np.float32)
    if exponent == 0 or n < 4:
        x = torch.from_numpy(white)
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        x = torch.from_numpy(np.fft.irfft(spec / f ** (exponent / 2), n).astype(np.float32))
    return x / x.pow(2).mean().sqrt().clamp_min(1e-12)


def mix_at_snr(fg: torch.Tensor, bg: torch.Tensor, snr_db: float, offset: int = 0) -> torch.Tensor:
    """``fg`` plus ``bg`` (from ``offset``, tiled or cut to ``fg``'s length) scaled so that
    ``fg`` is ``snr_db`` louder in mean power; ``fg`` alone when ``bg`` is silent."""
    n = fg.numel()
    if bg.numel() == 0 or n == 0:
        return fg
    reps = -(-(n + offset % bg.numel()) // bg.numel())
    bg = bg.repeat(reps)[offset % bg.numel() :][:n]
    p_fg = fg.pow(2).mean().clamp_min(1e-10)
    p_bg = bg.pow(2).mean()
    if float(p_bg) < 1e-10:
        return fg
    return fg + bg * torch.sqrt(p_fg / (p_bg * 10 ** (snr_db / 10)))


def pick_background(index: int, concepts: Sequence[str], rng: np.random.Generator) -> int | None:
    """A clip of another concept than clip ``index``'s, drawn from ``rng``; None if none."""
    others = [j for j, c in enumerate(concepts) if c != concepts[index]]
    return others[int(rng.integers(len(others)))] if others else None


def augment_waveform(
    wave: torch.Tensor,
    rate: int,
    rng: np.random.Generator,
    recipe: AudioRecipe = SPEECH,
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """One random perturbation of a mono waveform by ``recipe`` (module docstring);
    ``background``: the training clip a mix may take (else a mix is coloured noise)."""
    import torchaudio.functional as AF

    x = wave.float()
    speed = float(rng.choice(list(recipe.speeds)))
    if speed != 1.0:  # resampling to rate*speed and playing at rate changes tempo and pitch
        x = AF.resample(x, int(round(rate * speed)), rate)
    if recipe.pitch_p > 0 and rng.random() < recipe.pitch_p:
        semitones = float(rng.uniform(-recipe.pitch_semitones, recipe.pitch_semitones))
        x = change_pitch(x, rate, 2 ** (semitones / 12))
    if recipe.shift_p > 0 and rng.random() < recipe.shift_p:
        samples = int(rng.uniform(-recipe.shift_max, recipe.shift_max) * x.numel())
        x = time_shift(x, samples, bool(rng.random() < recipe.shift_circular))
    if recipe.mix_p > 0 and rng.random() < recipe.mix_p:
        snr_db = float(rng.uniform(*recipe.mix_snr_db))
        if background is not None and rng.random() < recipe.mix_clip:
            bg = background.float()
            x = mix_at_snr(x, bg, snr_db, int(rng.integers(max(1, bg.numel()))))
        else:
            x = mix_at_snr(x, coloured_noise(x.numel(), rng, float(rng.choice([0, 1, 2]))), snr_db)
    if recipe.telephone_p > 0 and rng.random() < recipe.telephone_p:
        x = telephone_band(x, rate)
    if recipe.reverb_p > 0 and rng.random() < recipe.reverb_p:
        t60 = float(rng.uniform(0.1, 0.5))
        n = int(t60 * rate)
        ir = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) * torch.exp(
            -6.9 * torch.arange(n, dtype=torch.float32) / n
        )
        ir[0] = 1.0
        x = AF.fftconvolve(x, ir / ir.norm())[: x.numel()]
    if recipe.noise_p > 0 and rng.random() < recipe.noise_p:
        snr_db = float(rng.uniform(*recipe.noise_snr_db))
        power = x.pow(2).mean().clamp_min(1e-10)
        noise = torch.from_numpy(rng.standard_normal(x.numel()).astype(np.float32))
        x = x + noise * torch.sqrt(power / (10 ** (snr_db / 10)))
    if recipe.gain_p > 0 and rng.random() < recipe.gain_p:
        x = x * 10 ** (float(rng.uniform(-recipe.gain_db, recipe.gain_db)) / 20)
    peak = float(x.abs().max()) if x.numel() else 0.0
    return x / peak * 0.9 if peak > 1.0 else x


register_audio_recipe("speech", SPEECH)
