"""The end-to-end object: frozen encoders + a SPANER model.

>>> sp = Spaner.from_profile("tiny", modalities=["text", "image"])
>>> result = sp.fit("data/manifest.jsonl", {"shots": 5})  # over the profile's training defaults
>>> sp.save("runs/ckpt")
>>> vectors = Spaner.load("runs/ckpt").embed("text", ["seven"])
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from spaner.encoders import Encoder, get_spec
from spaner.encoders.decode import RawInput
from spaner.errors import ConfigError
from spaner.model.checkpoint import checkpoint_hash, load_checkpoint, save_checkpoint
from spaner.model.config import AlignerConfig, ModalityConfig, SpanerConfig, TrainConfig, from_dict
from spaner.model.network import SpanerModel
from spaner.model.shared_encoders import build_shared
from spaner.model.streaming import Embedded, StreamingEmbedder
from spaner.search.calibration import Calibration, calibrate_model, load_calibration
from spaner.training.data import FeatureSet, Splits, build_features, sample_few_shot, split_manifest
from spaner.training.features import FeatureCache
from spaner.training.fit import TrainResult, fit
from spaner.training.manifest import Manifest, load_manifest
from spaner.training.text_bridge import (
    BridgeResult,
    TextBridgeConfig,
    align_through_text,
    manifest_phrases,
)

from .profiles import get_profile, resolve_train_config

if TYPE_CHECKING:
    from spaner.search.engine import Example, SearchResult

__all__ = ["Spaner", "PreparedData", "build_model_config", "build_encoders"]

log = logging.getLogger(__name__)


def build_encoders(
    choice: Mapping[str, str],
    options: Mapping[str, dict[str, Any]] | None = None,
    device: str = "cpu",
) -> dict[str, Encoder]:
    """Instantiate one encoder per modality; checks each encoder serves its modality. Inside
    :func:`spaner.model.shared_encoders.shared_encoders`, returns instances built earlier in the block."""
    encoders = {}
    for modality, name in choice.items():
        spec = get_spec(name)
        if spec.modality != modality:
            raise ConfigError(f"encoder {name!r} is a {spec.modality} encoder, not {modality}")
        encoders[modality] = build_shared(name, device, (options or {}).get(modality, {}))
    return encoders


def build_model_config(
    encoders: Mapping[str, Encoder],
    aligner: AlignerConfig,
    options: Mapping[str, dict[str, Any]] | None = None,
    profile: str | None = None,
) -> SpanerConfig:
    """Model config for these encoders. A native space shared by >= 2 modalities is used as the
    zero-init residual starting point, and fixes the unified dim to the native dim. A native
    space of one modality's own with a text tower (CLAP's audio) reaches the unified space
    through a learned map (``ModalityConfig.native_map``), so it can be aligned through text."""
    spaces: dict[str, list[str]] = {}
    for m, e in encoders.items():
        if e.native_space:
            spaces.setdefault(e.native_space, []).append(m)
    shared = {s for s, ms in spaces.items() if len(ms) >= 2}
    aligner = AlignerConfig(**asdict(aligner))
    anchor = aligner.anchor if aligner.anchor in encoders else None
    if anchor is not None and not encoders[anchor].native_dim:
        raise ConfigError(
            f"anchor modality {anchor!r}: encoder {encoders[anchor].name!r} has no native vector"
        )
    mods = {}
    for m, e in encoders.items():
        use = e.native_space in shared or m == anchor
        if use:
            aligner.dim = int(e.native_dim)  # type: ignore[arg-type]
        mods[m] = ModalityConfig(
            e.name, e.width, dict((options or {}).get(m, {})), e.native_space, e.native_dim, use
        )
        mods[m].native_map = not use and _maps_native(e)
    return SpanerConfig(aligner=aligner, modalities=mods, profile=profile)


def _maps_native(encoder: Encoder) -> bool:
    """True when ``encoder``'s native vector is worth a learned map into the unified space:
    it has a text tower in its native space, so the map can be fitted from text."""
    return bool(encoder.native_dim) and encoder.text_tower() is not None


@dataclass
class PreparedData:
    splits: Splits
    train: FeatureSet
    val: FeatureSet
    test: FeatureSet


class Spaner:
    """Encoders + model. Build with :meth:`from_profile` or :meth:`load`."""

    def __init__(
        self,
        model: SpanerModel,
        encoders: dict[str, Encoder],
        checkpoint: Path | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.model = model
        self.encoders = encoders
        self.checkpoint = checkpoint
        #: per modality-pair score calibration for searches over several modalities
        #: (:mod:`spaner.search.calibration`); None for an untrained model or an older checkpoint
        self.calibration = calibration

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_profile(
        cls,
        profile: str = "default",
        modalities: Sequence[str] | None = None,
        aligner: AlignerConfig | dict[str, Any] | None = None,
        encoders: Mapping[str, str] | None = None,
        options: Mapping[str, dict[str, Any]] | None = None,
        device: str = "cpu",
    ) -> Spaner:
        prof = get_profile(profile)
        choice = dict(prof.encoders)
        choice.update(encoders or {})
        if modalities is not None:
            unknown = [m for m in modalities if m not in choice]
            if unknown:
                raise ConfigError(
                    f"no encoder for modality {unknown} in profile {profile!r}; pass --encoder MODALITY=NAME"
                )
            choice = {m: choice[m] for m in modalities}
        if isinstance(aligner, AlignerConfig):
            acfg = aligner
        else:
            acfg = from_dict(AlignerConfig, {**prof.aligner, **(aligner or {})})
        encs = build_encoders(choice, options, device)
        config = build_model_config(encs, acfg, options, profile)
        torch.manual_seed(0)
        return cls(SpanerModel(config).to(device), encs)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Spaner:
        model, _ = load_checkpoint(path)
        calibration = load_calibration(path)
        choice = {m: c.encoder for m, c in model.config.modalities.items()}
        options = {m: c.options for m, c in model.config.modalities.items()}
        encs = build_encoders(choice, options, device)
        return cls(model.to(device), encs, Path(path), calibration)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        self.checkpoint = save_checkpoint(self.model, path, extra, self.calibration)
        return self.checkpoint

    @property
    def space_id(self) -> str | None:
        """Hash of the saved checkpoint (None until saved/loaded)."""
        return checkpoint_hash(self.checkpoint) if self.checkpoint else None

    @property
    def modalities(self) -> list[str]:
        return self.model.modalities

    # -- inference ----------------------------------------------------------------------
    def embed(
        self,
        modality: str,
        values: Sequence[RawInput],
        batch_size: int | None = None,
        names: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> np.ndarray:
        """Unit vectors ``[N, dim]`` (float32) for raw inputs: texts, file paths or bytes.

        Runs the streaming path (:mod:`spaner.model.streaming`): decoding on ``workers``
        threads, batches assembled ahead of the device, encoder and aligner on the device.
        ``batch_size`` None: 32 on the CPU, on a CUDA device what fits its free memory. The
        first input that cannot be decoded raises its InputError."""
        out = np.zeros((len(values), self.model.dim), np.float32)
        for part in self.embed_stream(modality, values, batch_size, names, workers):
            if part.problems:
                raise part.problems[0][1]
            out[part.positions] = part.vectors
        return out

    def embed_stream(
        self,
        modality: str,
        values: Iterable[RawInput],
        batch_size: int | None = None,
        names: Iterable[str | None] | None = None,
        workers: int | None = None,
    ) -> Iterator[Embedded]:
        """Embed an iterable of any length in bounded memory: yields one
        :class:`~spaner.model.streaming.Embedded` per batch (input positions, vectors, and the
        inputs that failed with their errors), in input order."""
        if modality not in self.encoders:
            raise ConfigError(
                f"this model has no {modality!r} modality (has: {', '.join(self.modalities)})"
            )
        enc = self.encoders[modality]
        embedder = StreamingEmbedder(enc, self.model, modality, batch_size, workers)
        return embedder.stream(values, names)

    @property
    def device(self) -> torch.device:
        """Where the model (prompt and aligners) runs: the encoders' device."""
        return self.model.prompt.device

    def to(self, device: str | torch.device) -> Spaner:
        """Move the encoders and the model (prompt and aligners) to ``device``."""
        for enc in self.encoders.values():
            enc.to(device)
        self.model.to(device)
        return self

    def search(
        self,
        store: Any,
        queries: str | Example | Sequence[str | Example],
        k: int = 10,
        **options: Any,
    ) -> SearchResult:
        """Search an open vector store of this model's space by examples: a text, an
        :class:`~spaner.search.engine.Example` (a file, bytes, a stored item) or a list of
        them, averaged into one query; one ranking over the target modalities, calibrated
        when the model has a calibration. ``options``: ``modalities``, ``filters``,
        ``group_by``, ``speech``, ``vocabulary`` (see :func:`spaner.search.engine.search`).

        >>> result = sp.search(store, "a red square", k=5, modalities=["image"])
        >>> [(h.id, h.relevance, h.score) for h in result.results]
        """
        from spaner.search.engine import search

        return search(self, store, queries, k, **options)

    # -- training -----------------------------------------------------------------------
    def train_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig for training this model: ``overrides`` over its profile's training
        defaults (the profile recorded in the model config) over TrainConfig's defaults; see
        :func:`spaner.profiles.resolve_train_config`."""
        return resolve_train_config(self.model.config.profile, overrides)

    def _train_config(self, cfg: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
        return cfg if isinstance(cfg, TrainConfig) else self.train_config(**(cfg or {}))

    def prepare(
        self,
        manifest: str | Path | Manifest,
        cfg: TrainConfig | Mapping[str, Any] | None = None,
        cache: FeatureCache | None = None,
        modalities: Sequence[str] | None = None,
    ) -> PreparedData:
        """Split the manifest, sample shots, and compute (cached) frozen features. ``cfg`` as
        in :meth:`fit`."""
        cfg = self._train_config(cfg)
        man = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        splits = split_manifest(man, cfg.seed)
        train_items, val_items = sample_few_shot(
            splits, cfg.shots, cfg.fraction, cfg.seed, cfg.val_fraction
        )
        mods = [m for m in (modalities or self.encoders) if m in self.encoders]
        encs = {m: self.encoders[m] for m in mods}
        labels: dict[str, int] = {}
        train = build_features(train_items, encs, splits.relevance, labels, cache)
        for modality, copies in (("audio", cfg.audio_augment), ("image", cfg.image_augment)):
            if copies and modality in train.modalities:
                from spaner.training.augment import add_copies

                paths = [i.fields[modality] for i in train_items if modality in i.fields]
                train.modalities[modality] = add_copies(
                    train.modalities[modality],
                    paths,
                    encs[modality],
                    copies,
                    cfg.seed,
                    cache,
                    audio_recipe=cfg.audio_recipe,
                )
        if cfg.phrasings and "text" in train.modalities and splits.relevance == "concept":
            from spaner.training.augment import add_phrasings

            train.modalities["text"] = add_phrasings(
                train.modalities["text"], train_items, encs["text"], cfg.phrasings, cache, labels
            )
        val = build_features(val_items, encs, splits.relevance, labels, cache)
        test = build_features(splits.test, encs, splits.relevance, labels, cache)
        log.info(
            "data: %s",
            ", ".join(f"{m}: {len(train.modalities[m])} train" for m in train.modalities),
        )
        return PreparedData(splits, train, val, test)

    def fit(
        self,
        manifest: str | Path | Manifest | PreparedData,
        cfg: TrainConfig | Mapping[str, Any] | None = None,
        cache: FeatureCache | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Few-shot training of prompt + aligners on the manifest's training split, then the
        search-time score calibration (``cfg.calibration``) on its validation split.

        ``cfg``: ``None`` or a mapping of TrainConfig fields (``{"shots": 5, "image_augment": 0}``)
        trains with the model profile's training defaults (``Profile.train``, e.g. the digits
        profile's image augmentation) for every field the mapping leaves out; a key given wins,
        whatever its value. A :class:`TrainConfig` instance is used as it is, every field
        included: build one with :meth:`train_config` to start from the profile's defaults."""
        cfg = self._train_config(cfg)
        data = (
            manifest if isinstance(manifest, PreparedData) else self.prepare(manifest, cfg, cache)
        )
        result = fit(self.model, data.train, data.val, cfg, progress=progress)
        self.calibration = calibrate_model(self.model, data.val, data.train, cfg.calibration)
        return result

    def extend(
        self,
        modality: str,
        manifest: str | Path | Manifest | PreparedData,
        cfg: TrainConfig | Mapping[str, Any] | None = None,
        encoder: str | None = None,
        options: dict[str, Any] | None = None,
        cache: FeatureCache | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Train only ``modality``'s aligner (adding the modality first if it is new); the shared
        prompt and every other aligner stay frozen, so existing embeddings do not change.
        ``cfg`` as in :meth:`fit`."""
        cfg = self._train_config(cfg)
        self.add_modality(modality, encoder, options)
        data = (
            manifest if isinstance(manifest, PreparedData) else self.prepare(manifest, cfg, cache)
        )
        if modality not in data.train.modalities:
            raise ConfigError(f"the manifest has no training items for modality {modality!r}")
        result = fit(self.model, data.train, data.val, cfg, only=[modality], progress=progress)
        self.calibration = calibrate_model(self.model, data.val, data.train, cfg.calibration)
        return result

    def align_through_text(
        self,
        modality: str,
        phrases: Sequence[str] | Manifest,
        cfg: TextBridgeConfig | Mapping[str, Any] | None = None,
        cache: FeatureCache | None = None,
    ) -> BridgeResult:
        """Align ``modality`` (audio on CLAP) through text alone, before or instead of its
        shots: fit its aligner's native map so that its encoder's text tower's vector of each
        phrase lands at this model's ``text`` embedding of it; nothing else changes
        (:mod:`spaner.training.text_bridge`). ``phrases``: a list, or a manifest (the texts and
        concept labels of its training split); ``cfg``: a TextBridgeConfig or its fields."""
        if not isinstance(cfg, TextBridgeConfig):
            cfg = from_dict(TextBridgeConfig, dict(cfg or {}))
        if isinstance(phrases, Manifest):
            phrases = manifest_phrases(phrases, cfg.seed)
        return align_through_text(self.model, self.encoders, modality, phrases, cfg, cache)

    def add_modality(
        self, modality: str, encoder: str | None = None, options: dict[str, Any] | None = None
    ) -> None:
        """Plug in ``modality`` with the registered ``encoder`` (a no-op if the model has it)."""
        if modality not in self.model.aligners:
            if encoder is None:
                raise ConfigError(
                    f"modality {modality!r} is new to this model: pass --encoder NAME for it"
                )
            enc = build_encoders({modality: encoder}, {modality: options or {}})[modality]
            self.encoders[modality] = enc
            native_ok = enc.native_space is not None and any(
                c.native_space == enc.native_space and c.use_native
                for c in self.model.config.modalities.values()
            )
            self.model.add_modality(
                modality,
                ModalityConfig(
                    enc.name,
                    enc.width,
                    dict(options or {}),
                    enc.native_space,
                    enc.native_dim,
                    native_ok,
                    native_map=not native_ok and _maps_native(enc),
                ),
            )
