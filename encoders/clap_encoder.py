"""CLAP (LAION's contrastive language-audio model) through ``transformers``: an audio tower and a
text tower that share one native space.

Both towers of one checkpoint share a single :class:`ClapBackbone` (cached per source and
seed), as open_clip's do, and report the same :attr:`~spaner.encoders.Encoder.native_space`,
so a model may use CLAP's text beside its audio, and a model that uses CLAP's audio can be
aligned through CLAP's text (:mod:`spaner.training.text_bridge`).

* **Audio** (:class:`ClapAudioEncoder`): decoded with limits, mixed to mono, resampled to the
  checkpoint's rate (48 kHz), cut into 10-s windows the deterministic way of
  :mod:`spaner.encoders.clap_features`. The tokens are HTSAT's last feature map, one token per
  time step (32 per window, ~0.31 s each), its frequency bands concatenated (width
  ``bands * hidden``: 2 x 768 for HTSAT-tiny); the mask keeps the steps that see the clip
  itself (a short clip is repeated to fill its window). The native vector is CLAP's projected
  audio embedding (unit length; for a clip of several windows, the direction of their mean
  weighted by seconds).
* **Text** (:class:`ClapTextEncoder`): RoBERTa token states with the attention mask (at most
  ``max_length`` tokens, 77 as CLAP was trained) and CLAP's projected text embedding (unit length).

Weights: a Hugging Face id (``laion/clap-htsat-unfused``, ``laion/larger_clap_general``) or a
local directory saved with ``save_pretrained``, loaded with ``use_safetensors=True``: a
checkpoint with only pickle files is refused, never unpickled. ``tiny=...`` builds a seeded
random model of the same architecture for tests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .clap_features import Window, split_windows, tokens_for, window_mels
from .decode import RawInput, load_audio_mono, load_text

__all__ = ["ClapBackbone", "ClapAudioEncoder", "ClapTextEncoder", "load_clap", "TINY_CLAP"]

log = logging.getLogger(__name__)

#: A tiny CLAP of the same architecture for tests (HTSAT 4 stages at width 8..64, a 2-layer
#: RoBERTa-style text model over MiniLM's tokenizer); its front end is clap-htsat-unfused's.
TINY_CLAP: dict[str, Any] = {
    "audio": {
        "patch_embeds_hidden_size": 8,
        "hidden_size": 64,
        "depths": [1, 1, 1, 1],
        "num_attention_heads": [1, 1, 2, 2],
        "window_size": 8,
        "projection_dim": 32,
        "enable_fusion": False,
    },
    "text": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "projection_dim": 32,
        "max_position_embeddings": 130,
    },
    "projection_dim": 32,
    "extractor": {"truncation": "rand_trunc", "frequency_min": 50},
}

_CACHE: dict[tuple[str, str, int], ClapBackbone] = {}
_LOCK = threading.Lock()


class _Tower(nn.Module):
    """One tower of a CLAP model: its encoder and its projection (the modules one encoder runs)."""

    def __init__(self, model: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.projection = projection


class ClapBackbone:
    """One frozen ``ClapModel`` with its tokenizer and feature extractor."""

    def __init__(self, source: str | None, tiny: dict[str, Any] | None, seed: int) -> None:
        from transformers import AutoTokenizer, ClapFeatureExtractor

        if source is None and tiny is None:
            raise EncoderLoadError("a CLAP encoder needs weights (a hub id or a directory) or tiny")
        self.source, self.tiny, self.seed = source, tiny, seed
        if not log.isEnabledFor(logging.DEBUG):  # no "Loading weights" bar on every load
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        try:
            if tiny is not None:
                from .hf_text_encoder import minilm_path

                self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
                self.extractor = ClapFeatureExtractor(**tiny.get("extractor", {}))
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(source)
                self.extractor = ClapFeatureExtractor.from_pretrained(source)
            self.model = self._create()
        except EncoderLoadError:
            raise
        except Exception as exc:
            raise EncoderLoadError(_load_hint(source, exc)) from exc
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        if self.fusion and self.extractor.truncation != "fusion":
            log.warning(
                "CLAP %s: a fusion model with %r truncation", source, self.extractor.truncation
            )

    def _create(self) -> nn.Module:
        """The frozen model, built from the weights (or the seed) alone."""
        from transformers import ClapConfig, ClapModel

        if self.tiny is not None:
            tokenizer = self.tokenizer
            text = {
                "vocab_size": len(tokenizer),
                "pad_token_id": tokenizer.pad_token_id,
                **self.tiny["text"],
            }
            config = ClapConfig(
                text_config=text,
                audio_config=self.tiny["audio"],
                projection_dim=self.tiny.get("projection_dim", 32),
            )
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = ClapModel(config)
        else:
            model = ClapModel.from_pretrained(self.source, use_safetensors=True)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def tower(self, kind: str, model: nn.Module | None = None) -> _Tower:
        """The audio or text tower of ``model`` (default: this backbone's, one object per kind,
        so that every encoder sharing the backbone holds the same module, and a precision
        switch made through one of them is seen by all)."""
        if model is None:
            towers = self.__dict__.setdefault("_towers", {})
            if kind not in towers:
                towers[kind] = self.tower(kind, self.model)
            return towers[kind]
        if kind == "audio":
            return _Tower(model.audio_model, model.audio_projection)
        return _Tower(model.text_model, model.text_projection)

    @property
    def space_id(self) -> str:
        return f"clap:{self.source}" if self.tiny is None else f"clap:tiny:random-seed{self.seed}"


def _load_hint(source: str | None, exc: Exception) -> str:
    """Why a CLAP checkpoint did not load, and what to pass instead."""
    what = f"CLAP checkpoint {source!r} could not be loaded ({str(exc)[:300].rstrip('.')})"
    if source is not None and Path(source).exists():
        return (
            f"{what}. CLAP loads from safetensors only (model.safetensors, never pickle files): "
            "convert a checkpoint you trust once with `ClapModel.from_pretrained(DIR)"
            ".save_pretrained(DIR)`."
        )
    return (
        f"{what}. Without network access, download it elsewhere (`hf download {source}`) and "
        "pass the directory: `--weights audio=/path/to/dir` (and `--weights text=/path/to/dir` "
        "for CLAP's text tower; weights=PATH in Python). CLAP loads from safetensors only."
    )


def load_clap(
    source: str | None, tiny: dict[str, Any] | None = None, seed: int = 0
) -> ClapBackbone:
    """Load (or reuse) a CLAP checkpoint: a hub id, a local directory, or ``tiny`` (random)."""
    if source is not None and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())
    key = (str(source), json.dumps(tiny, sort_keys=True), seed)
    with _LOCK:
        if key not in _CACHE:
            log.info("loading CLAP %s", source or f"tiny (random seed {seed})")
            _CACHE[key] = ClapBackbone(source, tiny, seed)
        return _CACHE[key]


class _ClapEncoder(Encoder):
    kind = ""

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        tiny: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.name = name
        self.backbone = load_clap(weights, tiny, seed)
        self._args: dict[str, Any] = {"weights": weights, "tiny": tiny, "seed": seed}
        self.tower = self.backbone.tower(self.kind)
        self.native_space = self.backbone.space_id
        self.native_dim = int(self.backbone.model.config.projection_dim)
        self.weights = self.backbone.source or f"random (seed {seed})"

    def modules(self) -> list[nn.Module]:
        return [self.tower]

    def fresh_module(self, module: nn.Module) -> nn.Module | None:
        if module is not self.tower:
            return None
        return self.backbone.tower(self.kind, self.backbone._create())

    def config(self) -> dict[str, Any]:
        return dict(self._args)


class ClapAudioEncoder(_ClapEncoder):
    """HTSAT time tokens ``[B, steps, bands * hidden]`` + CLAP's audio embedding; see the module
    docstring. ``max_windows`` caps a clip at that many 10-s windows (the rest is not encoded)."""

    modality = "audio"
    input_kind = "file"
    kind = "audio"

    def __init__(self, name: str, max_windows: int = 6, **kwargs: Any) -> None:
        device = kwargs.pop("device", "cpu")
        super().__init__(name, **kwargs)
        self.max_windows = int(max_windows)
        self._args["max_windows"] = self.max_windows
        ex = self.backbone.extractor
        self.sample_rate = int(ex.sampling_rate)
        self.window_s = float(ex.nb_max_samples) / self.sample_rate
        self.bands, self.steps = _grid(self.backbone.model.config.audio_config)
        self.width = self.bands * int(self.backbone.model.config.audio_config.hidden_size)
        self.to(device)

    def load(self, source: RawInput, name: str | None = None) -> list[Window]:
        wave = load_audio_mono(source, self.sample_rate, self.limits, name)
        ex = self.backbone.extractor
        return split_windows(
            wave,
            self.sample_rate,
            self.window_s,
            self.max_windows,
            self.backbone.fusion,
            ex.padding,
        )

    def preprocess(self, raws: Sequence[list[Window]]) -> dict[str, Any]:
        windows = [w for item in raws for w in item]
        mels, longer = window_mels(
            windows, self.backbone.extractor, self.backbone.fusion, self.device
        )
        return {
            "input_features": mels,
            "is_longer": longer,
            "seconds": [w.seconds for w in windows],
            "per_item": [len(item) for item in raws],
        }

    def _forward(self, batch: dict[str, Any]) -> TokenBatch:
        out = self.tower.model(input_features=batch["input_features"], is_longer=batch["is_longer"])
        fmap = out.last_hidden_state  # [W, hidden, bands, steps]
        w, hidden, bands, steps = fmap.shape
        if (bands, steps) != (self.bands, self.steps):  # pragma: no cover - an unknown variant
            raise EncoderLoadError(
                f"{self.name}: HTSAT gave {bands}x{steps}, expected {self.bands}x{self.steps}"
            )
        tokens = fmap.permute(0, 3, 2, 1).reshape(w, steps, bands * hidden)
        native = F.normalize(self.tower.projection(out.pooler_output).float(), dim=-1)
        seconds = batch["seconds"]
        items, natives, start = [], [], 0
        for n in batch["per_item"]:
            keep = [tokens_for(seconds[j], self.window_s, steps) for j in range(start, start + n)]
            items.append(
                torch.cat(
                    [tokens[j, :k] for j, k in zip(range(start, start + n), keep, strict=True)]
                )
            )
            weight = torch.tensor(seconds[start : start + n], device=native.device).unsqueeze(1)
            natives.append(F.normalize((native[start : start + n] * weight).sum(0), dim=-1))
            start += n
        longest = max(t.shape[0] for t in items)
        padded = tokens.new_zeros(len(items), longest, tokens.shape[-1])
        mask = torch.zeros(len(items), longest, dtype=torch.bool, device=tokens.device)
        for i, t in enumerate(items):
            padded[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return TokenBatch(padded, mask, torch.stack(natives))

    def text_tower(self) -> ClapTextEncoder:
        """CLAP's text tower of the same checkpoint: its vectors share this encoder's native space."""
        text = ClapTextEncoder(f"{self.name}:text", device=str(self.device), **self._text_args())
        text.set_precision(self.precision)
        return text

    def _text_args(self) -> dict[str, Any]:
        return {k: self._args[k] for k in ("weights", "tiny", "seed")}


class ClapTextEncoder(_ClapEncoder):
    """CLAP's text tower: token states ``[B, T, hidden]`` + CLAP's text embedding."""

    modality = "text"
    input_kind = "text"
    kind = "text"

    def __init__(self, name: str, max_length: int = 77, **kwargs: Any) -> None:
        device = kwargs.pop("device", "cpu")
        super().__init__(name, **kwargs)
        self.max_length = int(max_length)
        self._args["max_length"] = self.max_length
        self.width = int(self.backbone.model.config.text_config.hidden_size)
        self.to(device)

    def load(self, source: RawInput, name: str | None = None) -> str:
        return load_text(source if isinstance(source, str) else str(source), self.limits, name)

    def preprocess(self, raws: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.backbone.tokenizer(
            list(raws),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def _forward(self, batch: dict[str, torch.Tensor]) -> TokenBatch:
        out = self.tower.model(**batch)
        native = F.normalize(self.tower.projection(out.pooler_output).float(), dim=-1)
        return TokenBatch(out.last_hidden_state, batch["attention_mask"].bool(), native)


def _grid(config: Any) -> tuple[int, int]:
    """(frequency bands, time steps) of HTSAT's last feature map for this audio config."""
    stride = config.patch_stride
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    freq_ratio = config.spec_size // config.num_mel_bins
    side = config.spec_size // stride[0] // 2 ** (len(config.depths) - 1)
    bands = side // freq_ratio
    return bands, (config.spec_size // stride[1] // 2 ** (len(config.depths) - 1)) * freq_ratio
