"""The offline tri-modal digits benchmark: handwritten digit images, spoken digit words, text.

Everything is built offline and deterministically from one seed:

- **images**: scikit-learn's ``load_digits`` (the UCI 8x8 handwritten digits, 1797 images,
  pixel values 0-16). Each is saved as a 32x32 8-bit grayscale PNG, dark ink on white:
  every source pixel becomes a 4x4 block of ``255 - round(v * 255 / 16)``, so the original
  value is exactly ``round((255 - p) * 16 / 255)`` of any pixel in the block (and
  ``meta.source_index`` points back into ``load_digits``).
- **audio**: each digit word spoken by eSpeak NG voice variants (accent + speaker variant,
  e.g. ``en-us+m3``) with per-clip rate, pitch and pitch-range jitter, random gain and
  leading/trailing silence, and optional seeded background noise (white, pink or brown at
  10-30 dB SNR). Saved as 16 kHz mono 16-bit WAV.
- **text**: the concept through varied templates ("seven", "7", "the number seven", ...).

Splits keep evaluation data out of training: images are split per concept into disjoint
train/val/test sets, and voices are split into disjoint sets, so no test speaker is ever
heard in training. Text templates are shared by every split (a template carries no
sample-specific information; each split holds one text item per template and concept).

Layout under ``DIR``: ``images/img-0001.png``, ``audio/aud-00001.wav``, ``manifest.jsonl``
(one item per line, grouped by concept, not paired) and ``dataset.json`` (seed, config,
counts, voices per split, generator version).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spaner.datasets import espeak
from spaner.errors import ConfigError

__all__ = [
    "CONCEPTS",
    "TEMPLATES",
    "VOICE_POOL",
    "GENERATOR_VERSION",
    "DigitsConfig",
    "DigitsResult",
    "build_digits",
    "split_voices",
]

log = logging.getLogger(__name__)

#: Bump when the same seed and config would give different files.
GENERATOR_VERSION = "1"

CONCEPTS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "val", "test")

#: ``{word}`` is the digit word, ``{numeral}`` the digit. Shared by every split.
TEMPLATES = (
    "{word}",
    "{numeral}",
    "the number {word}",
    "the digit {numeral}",
    "someone saying {word}",
    "a handwritten {word}",
    "a spoken {word}",
    "the word {word}",
    "a picture of the digit {word}",
    "number {numeral}",
    "a voice counting {word}",
    "the numeral {numeral}",
    "a person says the number {word}",
    "a scribbled {numeral}",
    "{word}, the digit",
    "the figure {numeral} written by hand",
)

#: eSpeak NG voice variants, ordered so any prefix mixes accents and male/female/other
#: speakers. ``--voices N`` uses the first N.
VOICE_POOL = (
    "en-us+m3", "en+f2", "en-gb-scotland+klatt", "en-029+m1", "en-us+f4", "en-gb-x-rp+m7",
    "en+croak", "en-us-nyc+f1", "en-gb-x-gbclan+m2", "en-us+klatt2", "en-gb-x-rp+f3",
    "en+m5", "en-gb-x-gbcwmd+f5", "en-us+m6", "en-029+klatt3", "en-gb-scotland+f2",
    "en-us-nyc+m4", "en+f4", "en-us+klatt4", "en-gb-x-rp+m1", "en-gb-x-gbclan+f1",
    "en-us+m8", "en-029+f3", "en+klatt", "en-gb-scotland+m3", "en-us+f5",
    "en-gb-x-gbcwmd+m2", "en-us-nyc+klatt2", "en-gb-x-rp+f2", "en+m7", "en-us+f3",
    "en-gb-x-gbclan+klatt3",
)  # fmt: skip

SAMPLE_RATE = 16_000
_NOISE_COLORS = ("white", "pink", "brown")
_FEMALE = ("+f1", "+f2", "+f3", "+f4", "+f5")
_MALE = ("+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+m8")


@dataclass(frozen=True)
class DigitsConfig:
    """Everything that determines a digits build; saved in ``dataset.json``.

    ``voices``: how many of :data:`VOICE_POOL` to use (split train/val/test);
    ``renditions``: jittered clips per voice and digit; ``per_digit_images``: images per
    digit (``None``: all ~180); ``noise``: mix seeded background noise into ~80% of clips;
    ``val_fraction``/``test_fraction``: share of images and voices held out;
    ``image_scale``: nearest-neighbour upscale of the 8x8 images.
    """

    seed: int = 0
    voices: int = 24
    renditions: int = 3
    per_digit_images: int | None = None
    noise: bool = True
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    image_scale: int = 4

    def validate(self) -> None:
        """Raise :class:`ConfigError` if the config cannot give three non-empty splits."""
        if not 3 <= self.voices <= len(VOICE_POOL):
            raise ConfigError(f"--voices must be from 3 to {len(VOICE_POOL)}, got {self.voices}")
        if self.renditions < 1:
            raise ConfigError(f"--renditions must be at least 1, got {self.renditions}")
        if self.per_digit_images is not None and self.per_digit_images < 3:
            raise ConfigError(f"--per-digit-images must be at least 3, got {self.per_digit_images}")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise ConfigError("val and test fractions must each be between 0 and 0.5")
        if not 1 <= self.image_scale <= 32:
            raise ConfigError(f"image_scale must be between 1 and 32, got {self.image_scale}")


@dataclass(frozen=True)
class DigitsResult:
    """What :func:`build_digits` wrote."""

    out: Path
    counts: dict[str, Any]
    voices: dict[str, list[str]]
    seconds: float


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    return n - n_val - n_test, n_val, n_test


def _voice_kind(voice: str) -> str:
    if voice.endswith(_FEMALE):
        return "female"
    return "male" if voice.endswith(_MALE) else "other"


def split_voices(config: DigitsConfig) -> dict[str, list[str]]:
    """Disjoint voice sets per split: a seeded shuffle within male/female/other, interleaved,
    so every split gets a mix of speaker kinds."""
    rng = np.random.default_rng([config.seed, 2])
    chosen = list(VOICE_POOL[: config.voices])
    groups = [[v for v in chosen if _voice_kind(v) == kind] for kind in ("male", "female", "other")]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups if g]
    order = [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]
    n_train, n_val, _ = _split_sizes(len(order), config.val_fraction, config.test_fraction)
    test, val, train = (
        order[: -n_train - n_val],
        order[-n_train - n_val : -n_train],
        order[-n_train:],
    )
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _image_plan(config: DigitsConfig, targets: np.ndarray) -> list[tuple[int, int, str]]:
    """``(source_index, label, split)`` for every chosen image, in source order."""
    rng = np.random.default_rng([config.seed, 1])
    plan = []
    for label in range(len(CONCEPTS)):
        indices = np.flatnonzero(targets == label)
        indices = indices[rng.permutation(len(indices))]
        if config.per_digit_images is not None:
            indices = indices[: config.per_digit_images]
        n_train, n_val, _ = _split_sizes(len(indices), config.val_fraction, config.test_fraction)
        for pos, index in enumerate(indices):
            split = "train" if pos < n_train else ("val" if pos < n_train + n_val else "test")
            plan.append((int(index), label, split))
    return sorted(plan)


def _clip_jobs(
    config: DigitsConfig, voices: dict[str, list[str]], root: Path
) -> list[dict[str, Any]]:
    """One job per clip; every random choice comes from a generator keyed by the clip."""
    jobs = []
    for label, word in enumerate(CONCEPTS):
        for split in SPLITS:
            for voice in voices[split]:
                for rendition in range(config.renditions):
                    key = [config.seed, 3, zlib.crc32(voice.encode()), label, rendition]
                    rng = np.random.default_rng(key)
                    snr = int(rng.integers(10, 31)) if config.noise and rng.random() < 0.8 else None
                    jobs.append({
                        "concept": word, "split": split, "voice": voice, "rendition": rendition,
                        "rate": int(rng.integers(130, 221)), "pitch": int(rng.integers(25, 76)),
                        "range": int(rng.integers(30, 81)), "noise_snr_db": snr,
                        "noise_color": str(rng.choice(_NOISE_COLORS)) if snr is not None else None,
                        "peak": round(float(rng.uniform(0.3, 0.9)), 3),
                        "lead_s": round(float(rng.uniform(0.0, 0.15)), 3),
                        "tail_s": round(float(rng.uniform(0.0, 0.15)), 3),
                        "seed": int(rng.integers(0, 2**31 - 1)),
                    })  # fmt: skip
    for number, job in enumerate(jobs, start=1):
        job["id"] = f"aud-{number:05d}"
        job["path"] = str(root / "audio" / f"{job['id']}.wav")
    return jobs


def _write_image(pixels: np.ndarray, scale: int, path: Path) -> None:
    from PIL import Image

    ink = np.rint(pixels.astype(np.float64) * 255.0 / 16.0).astype(np.uint8)
    page = (255 - ink).repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(page, mode="L").save(path, format="PNG", optimize=False)


def _noise(color: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spectrum /= np.sqrt(freqs) if color == "pink" else freqs
    return np.fft.irfft(spectrum, n)


def _write_clip(job: dict[str, Any], samples: np.ndarray) -> float:
    """Gain, silence padding and noise for one spoken clip; writes the WAV, returns seconds."""
    import soundfile

    wave = samples.astype(np.float64) / 32768.0
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 0:
        raise espeak.EspeakError(f"eSpeak NG gave silence for {job['concept']!r} ({job['voice']})")
    wave *= job["peak"] / peak
    lead, tail = (round(job[k] * SAMPLE_RATE) for k in ("lead_s", "tail_s"))
    wave = np.concatenate([np.zeros(lead), wave, np.zeros(tail)])
    if job["noise_snr_db"] is not None:
        noise = _noise(job["noise_color"], wave.size, np.random.default_rng([job["seed"], 7]))
        speech_power = np.mean(wave[lead : wave.size - tail] ** 2)
        noise *= np.sqrt(speech_power / np.mean(noise**2) / 10 ** (job["noise_snr_db"] / 10))
        wave += noise
    pcm = np.rint(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)
    soundfile.write(job["path"], pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return round(pcm.size / SAMPLE_RATE, 4)


def _render_all(jobs: list[dict[str, Any]], workers: int, bar: Any) -> dict[str, float]:
    """Speak every clip (``workers`` eSpeak children at once) and write it; id -> seconds."""
    requests = [
        espeak.SpeechRequest(j["concept"], j["voice"], j["rate"], j["pitch"], j["range"], j["seed"])
        for j in jobs
    ]
    durations: dict[str, float] = {}
    for pos, samples, _ in espeak.synthesize_many(requests, workers, out_rate=SAMPLE_RATE):
        durations[jobs[pos]["id"]] = _write_clip(jobs[pos], samples)
        bar.update(1)
    return durations


def _write_dataset(root: Path, config: DigitsConfig, workers: int, progress: bool) -> DigitsResult:
    from sklearn.datasets import load_digits
    from tqdm.auto import tqdm

    start = time.perf_counter()
    digits = load_digits()
    images, targets = digits.images, digits.target
    voices = split_voices(config)
    plan = _image_plan(config, targets)
    jobs = _clip_jobs(config, voices, root)
    (root / "images").mkdir()
    (root / "audio").mkdir()

    records: list[dict[str, Any]] = []
    with tqdm(total=len(plan) + len(jobs), desc="digits", unit="file", disable=not progress) as bar:
        for number, (index, label, split) in enumerate(plan, start=1):
            item_id = f"img-{number:04d}"
            _write_image(images[index], config.image_scale, root / "images" / f"{item_id}.png")
            records.append({
                "id": item_id, "concept": CONCEPTS[label], "split": split,
                "image": f"images/{item_id}.png", "meta": {"source_index": index},
            })  # fmt: skip
            bar.update(1)
        durations = _render_all(jobs, workers, bar)
    for job in jobs:
        meta = {
            key: job[key]
            for key in (
                "voice",
                "rate",
                "pitch",
                "range",
                "noise_snr_db",
                "noise_color",
                "rendition",
            )
        }
        meta["duration_s"] = durations[job["id"]]
        records.append({
            "id": job["id"], "concept": job["concept"], "split": job["split"],
            "audio": f"audio/{job['id']}.wav", "meta": meta,
        })  # fmt: skip
    texts = [(w, s, t) for w in CONCEPTS for s in SPLITS for t in TEMPLATES]
    for number, (word, split, template) in enumerate(texts, start=1):
        text = template.format(word=word, numeral=CONCEPTS.index(word))
        records.append({
            "id": f"txt-{number:04d}", "concept": word, "split": split,
            "text": text, "meta": {"template": template},
        })  # fmt: skip

    order = {concept: i for i, concept in enumerate(CONCEPTS)}
    records.sort(key=lambda r: (order[r["concept"]], r["id"][:3], r["id"]))
    with open(root / "manifest.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
    counts = _count(records)
    info = _dataset_info(config, counts, voices)
    (root / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return DigitsResult(out=root, counts=counts, voices=voices, seconds=time.perf_counter() - start)


def _count(records: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Any] = {"total": len(records), "by_modality": {}, "by_split": {}}
    counts["by_split"] = {split: {"image": 0, "audio": 0, "text": 0} for split in SPLITS}
    counts["by_concept"] = {c: {"image": 0, "audio": 0, "text": 0} for c in CONCEPTS}
    for record in records:
        m = next(m for m in ("image", "audio", "text") if m in record)
        counts["by_modality"][m] = counts["by_modality"].get(m, 0) + 1
        counts["by_split"][record["split"]][m] += 1
        counts["by_concept"][record["concept"]][m] += 1
    return counts


def _dataset_info(
    config: DigitsConfig, counts: dict[str, Any], voices: dict[str, list[str]]
) -> dict[str, Any]:
    size = 8 * config.image_scale
    return {
        "name": "digits",
        "generator": "spaner.datasets.digits",
        "generator_version": GENERATOR_VERSION,
        "espeak_ng_version": espeak.version(),
        "seed": config.seed,
        "config": asdict(config),
        "concepts": list(CONCEPTS),
        "counts": counts,
        "voices": voices,
        "images": {
            "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
            "format": f"PNG, {size}x{size}, 8-bit grayscale, dark ink on white",
            "encoding": f"each 8x8 source pixel v (0-16) is a {config.image_scale}x{config.image_scale} block of p = 255 - round(v * 255 / 16)",
            "recover": "v = round((255 - p) * 16 / 255); meta.source_index indexes load_digits()",
        },
        "audio": {
            "format": "WAV, 16 kHz, mono, PCM 16-bit",
            "synthesiser": "eSpeak NG via espeakng-loader, resampled from its native rate",
            "meta": "voice, rate (wpm), pitch and range (0-100), noise_snr_db (null: clean), noise_color",
        },
        "text": {
            "templates": list(TEMPLATES),
            "shared_across_splits": True,
            "note": "every split holds each template once per concept; templates carry no sample-specific information",
        },
        "splits": "images and voices are disjoint between train, val and test",
    }


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty; pass --overwrite to rebuild it")


def build_digits(
    out: str | os.PathLike[str],
    config: DigitsConfig | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> DigitsResult:
    """Build the digits benchmark into ``out``; see the module docstring for the layout.

    The build writes into a temporary directory beside ``out`` and swaps it in at the end,
    so an interrupted build never leaves a half-written dataset. An existing non-empty
    ``out`` is an error unless ``overwrite``. ``workers`` (eSpeak processes at once; default
    one per core, at most 2) does not change the output.
    """
    config = config or DigitsConfig()
    config.validate()
    out = Path(out)
    _prepare_out(out, overwrite)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    from spaner.index.atomic_io import swap_into_place

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        result = _write_dataset(tmp, config, workers, progress)
        swap_into_place(tmp, out)  # the previous build is put back if this fails
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("digits: %d items in %s (%.1f s)", result.counts["total"], out, result.seconds)
    return DigitsResult(out=out, counts=result.counts, voices=result.voices, seconds=result.seconds)
