"""Typed configurations, saved as JSON beside the weights; enough to rebuild every object.

Field ``metadata["help"]`` documents each setting (the CLI reuses it). Values the SPANER
paper does not publish (prompt length, depth, heads, width) are settings with documented
defaults, not constants baked into code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from spaner.errors import ConfigError

__all__ = ["AlignerConfig", "ModalityConfig", "SpanerConfig", "TrainConfig", "from_dict"]

FORMAT_VERSION = 1


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class AlignerConfig:
    """Shape of the shared prompt and the per-modality aligners."""

    kind: Literal["cross_attention", "linear"] = _f(
        "cross_attention", "aligner type: 'cross_attention' (SPANER) or 'linear' (baseline)"
    )
    prompt_mode: Literal["shared", "separate"] = _f(
        "shared", "one prompt for every modality ('shared', SPANER) or one per modality (ablation)"
    )
    prompt_len: int = _f(8, "number of learnable prompt tokens")
    width: int = _f(128, "aligner width (prompt token size)")
    depth: int = _f(2, "cross-attention layers per aligner")
    heads: int = _f(4, "attention heads")
    ff_mult: int = _f(2, "feed-forward expansion factor")
    dropout: float = _f(0.1, "dropout inside aligners during training")
    positional: bool = _f(True, "add fixed sinusoidal positions to projected tokens")
    dim: int = _f(
        128, "dimension of the unified space (forced to the native dim when a native space is used)"
    )
    init_temperature: float = _f(0.07, "initial InfoNCE temperature (learnable)")
    anchor: str | None = _f(
        None,
        "a modality whose encoder's own native vector anchors the unified space (its head is a "
        "zero-init residual on it, and the dim becomes its dim): e.g. 'text' with MiniLM's "
        "sentence embedding, so concepts never trained on still land where their words are",
    )
    anchor_trainable: bool = _f(
        True,
        "train the anchor modality's residual head too (False: the anchor's vectors stay exactly "
        "its encoder's native space and only the other aligners learn to map into it)",
    )
    linear_segments: int = _f(
        4,
        "linear baseline only: pool tokens as the means of this many equal, consecutive "
        "segments (1 = plain mean; a plain mean of per-utterance-normalised frames is ~0)",
    )

    def validate(self) -> None:
        if self.kind not in ("cross_attention", "linear"):
            raise ConfigError(
                f"aligner kind must be 'cross_attention' or 'linear', got {self.kind!r}"
            )
        if self.prompt_mode not in ("shared", "separate"):
            raise ConfigError(
                f"prompt_mode must be 'shared' or 'separate', got {self.prompt_mode!r}"
            )
        for name in ("prompt_len", "width", "depth", "heads", "ff_mult", "dim", "linear_segments"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"aligner {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ConfigError(f"aligner width {self.width} must be divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.init_temperature < 10:
            raise ConfigError(f"init_temperature must be in (0, 10), got {self.init_temperature}")


@dataclass
class ModalityConfig:
    """The encoder behind one modality and what the model needs to know of it."""

    encoder: str
    width: int
    options: dict[str, Any] = field(default_factory=dict)
    native_space: str | None = None
    native_dim: int | None = None
    use_native: bool = False
    #: the head maps the encoder's own native space (not the unified one) into the unified space
    #: with a learned linear map, a residual base like ``use_native``: set for an encoder with a
    #: text tower in its native space (CLAP), so the modality can be aligned through text
    #: (:mod:`spaner.training.text_bridge`)
    native_map: bool = False


@dataclass
class SpanerConfig:
    aligner: AlignerConfig = field(default_factory=AlignerConfig)
    modalities: dict[str, ModalityConfig] = field(default_factory=dict)
    profile: str | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainConfig:
    """Few-shot training settings."""

    shots: int | None = _f(None, "K examples per concept per modality (concept-grouped manifests)")
    fraction: float | None = _f(
        None, "fraction of training lines/pairs to use (alternative to --shots)"
    )
    epochs: int = _f(200, "maximum epochs")
    batch_size: int = _f(256, "items per batch (all modalities together)")
    lr: float = _f(3e-4, "AdamW peak learning rate (one-cycle schedule)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    val_fraction: float = _f(
        0.15,
        "share of the training pool held out for validation when the manifest has no 'val' split",
    )
    patience: int = _f(20, "early-stopping patience in epochs")
    workers: int = _f(
        1,
        "threads that train each batch in shards, torch on one thread each (spaner.training.sharded); "
        "the weights depend on it as on the seed",
    )
    val_every: int = _f(
        2,
        "validate (and consider early stopping) every N epochs; the last epoch is always validated",
    )
    min_epochs: int = _f(
        40,
        "epochs before early stopping may trigger (the one-cycle warm-up makes early validation noisy)",
    )
    monitor: str = _f(
        "recall",
        "early-stopping signal on the validation set: 'recall' (mean R@1 over directions) or 'loss'",
    )
    keep: str = _f(
        "best",
        "the weights training returns: 'best' (the best validated epoch, with early stopping) or "
        "'last' (the whole one-cycle schedule, no early stopping: for a collection that is its "
        "own training set, such as the demo, where a tiny validation split chooses epochs by noise)",
    )
    loss: str = _f(
        "pairs",
        "training objective: 'pairs' (one contrastive loss per pair of modalities), 'mixed' (one "
        "over every item of a batch, any modality: mixes the modalities in a search over all of "
        "them, at a cost in per-direction recall) or 'both' (their mean); see spaner.model.losses and "
        "BENCHMARKS.md 'Mixed pool'",
    )
    balance: bool = _f(
        True, "mixed loss: each modality's positives get an equal share of an anchor's target"
    )
    gap_weight: float = _f(
        0.0, "weight of the modality-gap term (squared distance between modality centroids)"
    )
    mix_weight: float = _f(
        0.0,
        "weight of the own-modality preference term (an item closer to its own modality's "
        "positives than to other modalities' positives); see spaner.model.losses",
    )
    calibration: str = _f(
        "listwise",
        "search-time score calibration fitted on the validation split at the end of training, "
        "so a search over several modalities ranks by meaning: 'listwise', 'platt', 'zpos', "
        "'zscore', 'isotonic' or 'none'; see spaner.search.calibration and BENCHMARKS.md 'Mixed pool'",
    )
    seed: int = _f(0, "seed for sampling, initialisation and shuffling")
    augment: bool = _f(
        False,
        "token dropout on the frozen features during training (not raw-media augmentation: see "
        "audio_augment, image_augment)",
    )
    audio_augment: int = _f(
        4,
        "augmented copies of each training audio clip (speed/pitch, telephone band, "
        "reverberation, noise; see spaner.training.augment); 0 = off",
    )
    audio_recipe: str = _f(
        "speech",
        "what the audio copies draw, a recipe registered in spaner.training.audio_augment: "
        "'speech' (speed/pitch, telephone band, reverberation, noise)",
    )
    image_augment: int = _f(
        0,
        "augmented copies of each training image (rotation, scale, shear, shift, elastic "
        "deformation, stroke thickness; see spaner.training.image_augment); 0 = off. The digits "
        "profile sets it (README, 'Profiles')",
    )
    phrasings: int = _f(
        0,
        "extra training texts per concept made from its English label and WordNet: the bare "
        "noun, with an article, the plural, 'a photo of ...', 'the sound of ...', and where "
        "WordNet names the sound, 'a dog barking' (see spaner.concepts.phrasings); 0 = off",
    )

    def validate(self) -> None:
        if self.shots is not None and self.fraction is not None:
            raise ConfigError("pass either --shots or --fraction, not both")
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"--shots must be >= 1, got {self.shots}")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.monitor not in ("recall", "loss"):
            raise ConfigError(f"monitor must be 'recall' or 'loss', got {self.monitor!r}")
        if self.keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if (
            self.epochs < 1
            or self.batch_size < 2
            or self.lr <= 0
            or self.patience < 1
            or self.min_epochs < 0
        ):
            raise ConfigError("epochs >= 1, batch size >= 2, lr > 0 and patience >= 1 are required")
        if self.loss not in ("pairs", "mixed", "both"):
            raise ConfigError(f"loss must be 'pairs', 'mixed' or 'both', got {self.loss!r}")
        if self.calibration not in ("listwise", "platt", "zpos", "zscore", "isotonic", "none"):
            raise ConfigError(
                "calibration must be 'listwise', 'platt', 'zpos', 'zscore', 'isotonic' or "
                f"'none', got {self.calibration!r}"
            )
        if not 0.0 <= self.gap_weight < 1e6:
            raise ConfigError(f"gap_weight must be >= 0, got {self.gap_weight}")
        if not 0.0 <= self.mix_weight < 1e6:
            raise ConfigError(f"mix_weight must be >= 0, got {self.mix_weight}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.val_every < 1:
            raise ConfigError(f"val_every must be >= 1, got {self.val_every}")
        if self.audio_augment < 0:
            raise ConfigError(f"audio_augment must be >= 0, got {self.audio_augment}")
        if self.image_augment < 0:
            raise ConfigError(f"image_augment must be >= 0, got {self.image_augment}")
        if self.phrasings < 0:
            raise ConfigError(f"phrasings must be >= 0, got {self.phrasings}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a (nested) config dataclass from a dict, rejecting unknown keys."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if cls is SpanerConfig and key == "aligner":
            value = from_dict(AlignerConfig, value)
        elif cls is SpanerConfig and key == "modalities":
            value = {m: from_dict(ModalityConfig, v) for m, v in value.items()}
        kwargs[key] = value
    return cls(**kwargs)
