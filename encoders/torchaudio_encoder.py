"""torchaudio self-supervised speech models (wav2vec 2.0, HuBERT, WavLM) as an audio encoder.

Audio is decoded safely, mixed to mono, resampled to the bundle's rate and, when longer
than ``chunk_seconds``, split into chunks whose frame features are concatenated (up to
``max_chunks``). Weights come from a torchaudio bundle (downloaded once) or a local file
(safetensors, or a torch state dict loaded with ``weights_only=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_audio_mono

__all__ = ["TorchaudioEncoder", "TINY_WAV2VEC2_PARAMS", "load_state_dict_file"]

log = logging.getLogger(__name__)

#: A tiny wav2vec2 architecture for tests: same code path, random seeded weights.
TINY_WAV2VEC2_PARAMS: dict[str, Any] = {
    "extractor_mode": "group_norm",
    "extractor_conv_layer_config": [(16, 10, 5)]
    + [(16, 3, 2)] * 4
    + [(16, 2, 2)] * 2,  # 50 frames/s
    "extractor_conv_bias": False,
    "encoder_embed_dim": 48,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 96,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights from ``.safetensors`` or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise EncoderLoadError(f"local weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderLoadError(f"could not read weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


class TorchaudioEncoder(Encoder):
    """Frame features ``[B, frames, embed_dim]`` from a wav2vec2-family model (~50 frames/s)."""

    modality = "audio"
    input_kind = "file"

    def __init__(
        self,
        name: str,
        bundle: str | None = None,
        weights: str | None = None,
        arch: dict[str, Any] | None = None,
        model_type: str = "wav2vec2",
        sample_rate: int = 16000,
        seed: int = 0,
        layer: int | None = None,
        chunk_seconds: float = 20.0,
        max_chunks: int = 6,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        import torchaudio

        self.name = name
        self.chunk_seconds = float(chunk_seconds)
        self.max_chunks = int(max_chunks)
        self.layer = layer
        self._args: dict[str, Any] = {
            "bundle": bundle,
            "weights": weights,
            "seed": seed,
            "layer": layer,
            "chunk_seconds": chunk_seconds,
            "max_chunks": max_chunks,
        }
        self.normalize_waveform = False
        if bundle is not None:
            b = getattr(torchaudio.pipelines, bundle, None)
            if b is None:
                raise EncoderLoadError(f"unknown torchaudio bundle {bundle!r} for encoder {name!r}")
            self.sample_rate = int(b.sample_rate)
            params = dict(b._params)
            model_type = getattr(b, "_model_type", model_type)
            self.normalize_waveform = bool(getattr(b, "_normalize_waveform", False))
            self.weights = f"torchaudio:{bundle}" if weights is None else str(weights)
        else:
            if arch is None:
                raise EncoderLoadError(
                    f"audio encoder {name!r} needs a torchaudio bundle name or an architecture"
                )
            self.sample_rate = int(sample_rate)
            params = dict(arch)
            self._args.update({"arch": arch, "model_type": model_type, "sample_rate": sample_rate})
            self.weights = str(weights) if weights is not None else f"random (seed {seed})"

        def make() -> torch.nn.Module:
            if bundle is not None and weights is None:
                try:
                    model = b.get_model()
                except Exception as exc:
                    raise EncoderLoadError(
                        f"audio encoder {name!r}: torchaudio bundle {bundle} weights could not be downloaded: {exc}. "
                        f"Without network access, save the bundle's state dict (e.g. as .safetensors) and pass "
                        f"`--weights audio=/path/{bundle.lower()}.safetensors` (weights=PATH in Python)."
                    ) from exc
            else:
                model = TorchaudioEncoder._build(model_type, params, seed)
                if weights is not None:
                    model.load_state_dict(load_state_dict_file(weights))
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            return model

        self._make = make
        self.model = make()
        self.width = int(params["encoder_embed_dim"])
        self.to(device)

    @staticmethod
    def _build(model_type: str, params: dict[str, Any], seed: int) -> torch.nn.Module:
        from torchaudio.models import wav2vec2_model, wavlm_model

        params = {
            k: (list(map(tuple, v)) if k == "extractor_conv_layer_config" and v else v)
            for k, v in params.items()
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if model_type.lower() == "wavlm":
                return wavlm_model(**params)
            return wav2vec2_model(**params)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def fresh_module(self, module: torch.nn.Module) -> torch.nn.Module | None:
        return self._make() if module is self.model else None

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def load(self, source: RawInput, name: str | None = None) -> torch.Tensor:
        mono = load_audio_mono(source, self.sample_rate, self.limits, name)
        limit = int(self.chunk_seconds * self.max_chunks * self.sample_rate)
        if mono.numel() > limit:
            log.debug(
                "%s: keeping the first %.0f s of audio", name or "<audio>", limit / self.sample_rate
            )
            mono = mono[:limit]
        min_len = 400  # the feature extractor's receptive field at 16 kHz
        if mono.numel() < min_len:
            mono = torch.nn.functional.pad(mono, (0, min_len - mono.numel()))
        return mono

    def preprocess(
        self, raws: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Split each waveform into chunks; returns padded chunks, their lengths, and chunks per item."""
        chunk = int(self.chunk_seconds * self.sample_rate)
        pieces: list[torch.Tensor] = []
        per_item: list[int] = []
        for wav in raws:
            parts = [wav[i : i + chunk] for i in range(0, wav.numel(), chunk)]
            parts = [p for p in parts if p.numel() >= 400] or [wav[:chunk]]
            pieces.extend(parts)
            per_item.append(len(parts))
        lengths = torch.tensor([p.numel() for p in pieces])
        batch = torch.zeros(len(pieces), int(lengths.max()))
        for i, p in enumerate(pieces):
            x = p
            if self.normalize_waveform:
                x = torch.nn.functional.layer_norm(x, x.shape)
            batch[i, : p.numel()] = x
        return batch.to(self.device), lengths.to(self.device), per_item

    def _forward(self, batch: tuple[torch.Tensor, torch.Tensor, list[int]]) -> TokenBatch:
        waves, lengths, per_item = batch
        if self.layer is None:
            feats, out_lengths = self.model(waves, lengths)
        else:
            layers, out_lengths = self.model.extract_features(waves, lengths, num_layers=self.layer)
            feats = layers[-1]
        if out_lengths is None:
            out_lengths = torch.full((feats.shape[0],), feats.shape[1], device=feats.device)
        # Re-join chunks per item.
        items: list[torch.Tensor] = []
        start = 0
        for n in per_item:
            parts = [feats[j, : int(out_lengths[j])] for j in range(start, start + n)]
            items.append(torch.cat(parts, dim=0))
            start += n
        longest = max(t.shape[0] for t in items)
        tokens = feats.new_zeros(len(items), longest, feats.shape[-1])
        mask = torch.zeros(len(items), longest, dtype=torch.bool, device=feats.device)
        for i, t in enumerate(items):
            tokens[i, : t.shape[0]] = t
            mask[i, : t.shape[0]] = True
        return TokenBatch(tokens, mask, None)
