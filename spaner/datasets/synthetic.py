"""A seeded synthetic tri-modal set that carries its own ground truth.

Concepts are colours. An image is a noisy patch of the colour with a random darker
square; a sound is a tone at the colour's own pitch with noise; a text is a template
naming the colour. With ``paired=True`` each manifest line holds one text, one image and
one sound of a concept; otherwise each line holds one modality (concept-grouped). Used by
the tests and for trying the pipeline without any download.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["COLOURS", "make_synthetic"]

COLOURS: dict[str, tuple[int, int, int]] = {
    # ordered so that the first concepts are the most distinct colours
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 40),
    "magenta": (230, 40, 230),
    "cyan": (40, 210, 220),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "orange": (250, 140, 20),
    "gray": (128, 128, 128),
    "brown": (120, 70, 30),
    "pink": (250, 130, 190),
}
_TEMPLATES = [
    "{c}",
    "a {c} picture",
    "something {c}",
    "the colour {c}",
    "a patch of {c}",
    "{c} noise",
    "pure {c}",
    "a {c} tone",
]


def make_synthetic(
    out: str | Path,
    concepts: int = 10,
    per_concept: int = 12,
    seed: int = 0,
    paired: bool = False,
    modalities: tuple[str, ...] = ("text", "image", "audio"),
    test_fraction: float = 0.34,
    image_size: int = 32,
    sample_rate: int = 16000,
    seconds: float = 0.5,
) -> Path:
    """Write images, sounds and ``manifest.jsonl`` under ``out``; returns the manifest path."""
    import soundfile as sf
    from PIL import Image

    if not 1 <= concepts <= len(COLOURS):
        raise ValueError(f"concepts must be in 1..{len(COLOURS)}")
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)[:concepts]
    lines = []
    n_test = max(1, round(per_concept * test_fraction))
    for ci, name in enumerate(names):
        base = np.array(COLOURS[name], dtype=np.float32)
        freq = 220.0 * 2 ** (ci / 3)
        for j in range(per_concept):
            split = "test" if j < n_test else "train"
            rec: dict[str, dict] = {}
            if "image" in modalities:
                img = base + rng.normal(0, 18, (image_size, image_size, 3))
                s = int(rng.integers(4, image_size // 2))
                x, y = rng.integers(0, image_size - s, 2)
                img[y : y + s, x : x + s] *= 0.6
                path = f"images/{name}-{j:03d}.png"
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out / path)
                rec["image"] = {"image": path}
            if "audio" in modalities:
                t = np.arange(int(sample_rate * seconds)) / sample_rate
                f = freq * (1 + rng.normal(0, 0.01))
                wav = 0.4 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) + rng.normal(
                    0, 0.03, t.shape
                )
                path = f"audio/{name}-{j:03d}.wav"
                sf.write(out / path, wav.astype(np.float32), sample_rate, subtype="PCM_16")
                rec["audio"] = {"audio": path}
            if "text" in modalities:
                rec["text"] = {
                    "text": _TEMPLATES[int(rng.integers(len(_TEMPLATES)))].format(c=name)
                }
            if paired:
                line = {"id": f"{name}-{j:03d}", "concept": name, "split": split}
                for fields in rec.values():
                    line.update(fields)
                lines.append(line)
            else:
                for m, fields in rec.items():
                    lines.append(
                        {"id": f"{m}-{name}-{j:03d}", "concept": name, "split": split, **fields}
                    )
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return manifest
