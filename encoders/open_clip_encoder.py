"""open_clip image and text towers as SPANER encoders.

Both towers of one open_clip model share a single model instance (cached per model name,
weights and seed). They return token sequences (ViT patch tokens, text tokens up to the
end-of-text token) and the model's own pooled, projected embedding as the *native*
vector, so an untrained SPANER model can reproduce CLIP's image-text space exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_image, load_text
from .pixels import plan_from_open_clip

__all__ = ["OpenClipBackbone", "OpenClipImageEncoder", "OpenClipTextEncoder", "load_backbone"]

log = logging.getLogger(__name__)

_CONFIG_DIR = Path(__file__).parent / "configs"
_CACHE: dict[tuple[str, str | None, int], OpenClipBackbone] = {}
_LOCK = threading.Lock()
_configs_added = False


class OpenClipBackbone:
    """One loaded open_clip model with its preprocessing and tokenizer."""

    def __init__(self, model_name: str, pretrained: str | None, seed: int) -> None:
        import open_clip

        global _configs_added
        if not _configs_added:
            open_clip.add_model_config(_CONFIG_DIR)
            _configs_added = True
        self.model_name = model_name
        self.pretrained = pretrained
        self.seed = seed
        try:
            model, preprocess = self._create()
        except Exception as exc:
            where = f"weights {pretrained!r}" if pretrained else "random weights"
            raise EncoderLoadError(
                f"open_clip model {model_name!r} with {where} could not be loaded: {exc}. "
                "Without network access, download the checkpoint elsewhere and pass its local path, "
                "e.g. `--weights image=/path/open_clip_model.safetensors --weights text=/path/open_clip_model.safetensors` "
                "(or weights=PATH in Python)."
            ) from exc
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.embed_dim = _embed_dim(model)
        visual = model.visual
        self.image_width = (
            int(getattr(visual, "transformer", None).width)
            if hasattr(visual, "transformer")
            else self.embed_dim
        )
        # ViT towers can return patch tokens; the flag is switched on only inside our forward
        # (under ``lock``) so the shared model keeps behaving normally for everyone else.
        self.image_tokens = hasattr(visual, "output_tokens") and hasattr(visual, "transformer")
        self.lock = threading.Lock()
        text = getattr(model, "text", None)
        self.text_width = (
            int(text.width)
            if text is not None and hasattr(text, "width")
            else int(model.transformer.width)
        )

    def _create(self) -> tuple[torch.nn.Module, Any]:
        """A frozen model and its image transform, built from the weights (or the seed) alone."""
        import open_clip

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.model_name, pretrained=self.pretrained or None
            )
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model, preprocess

    def fresh_model(self) -> torch.nn.Module:
        """The model built again with its original float32 weights (for the fp32 path after bf16)."""
        return self._create()[0]

    @property
    def space_id(self) -> str:
        return f"open_clip:{self.model_name}:{self.pretrained or f'random-seed{self.seed}'}"


def _embed_dim(model: torch.nn.Module) -> int:
    proj = getattr(model, "text_projection", None)
    if isinstance(proj, torch.nn.Parameter):
        return int(proj.shape[1])
    if isinstance(proj, torch.nn.Linear):
        return int(proj.out_features)
    with torch.no_grad():
        return int(model.encode_text(torch.zeros(1, 8, dtype=torch.long)).shape[-1])


def load_backbone(
    model_name: str, pretrained: str | None = None, seed: int = 0
) -> OpenClipBackbone:
    """Load (or reuse) an open_clip model. ``pretrained`` is a tag or a local checkpoint path."""
    key = (model_name, pretrained, seed)
    with _LOCK:
        if key not in _CACHE:
            log.info("loading open_clip %s (%s)", model_name, pretrained or f"random seed {seed}")
            _CACHE[key] = OpenClipBackbone(model_name, pretrained, seed)
        return _CACHE[key]


class _OpenClipEncoder(Encoder):
    def __init__(
        self,
        name: str,
        model_name: str,
        pretrained: str | None = None,
        seed: int = 0,
        weights: str | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.name = name
        source = weights or pretrained
        self.backbone = load_backbone(model_name, source, seed)
        self._args = {"model_name": model_name, "pretrained": source, "seed": seed}
        self.native_space = self.backbone.space_id
        self.native_dim = self.backbone.embed_dim
        self.weights = source or f"random (seed {seed})"
        self.to(device)

    def modules(self) -> list[torch.nn.Module]:
        return [self.backbone.model]

    def fresh_module(self, module: torch.nn.Module) -> torch.nn.Module | None:
        return self.backbone.fresh_model() if module is self.backbone.model else None

    def config(self) -> dict[str, Any]:
        return dict(self._args)


class OpenClipImageEncoder(_OpenClipEncoder):
    """CLIP image tower: ViT patch tokens ``[B, grid², width]`` + the native image embedding."""

    modality = "image"
    input_kind = "file"
    item_preprocess = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.width = self.backbone.image_width
        self.pixel_plan = plan_from_open_clip(self.backbone.preprocess)

    def load(self, source: RawInput, name: str | None = None):
        return load_image(source, self.limits, name)

    def preprocess(self, raws: Sequence[Any]) -> torch.Tensor:
        return torch.stack([self.backbone.preprocess(img) for img in raws]).to(self.device)

    def _forward(self, batch: torch.Tensor) -> TokenBatch:
        visual = self.backbone.model.visual
        with self.backbone.lock:
            if self.backbone.image_tokens:
                visual.output_tokens = True
            try:
                out = visual(batch)
            finally:
                if self.backbone.image_tokens:
                    visual.output_tokens = False
        if isinstance(out, tuple):
            pooled, tokens = out
        else:  # towers without token output (ResNet, timm): the pooled vector is the one token
            pooled, tokens = out, out.unsqueeze(1)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return TokenBatch(tokens, mask, pooled)


class OpenClipTextEncoder(_OpenClipEncoder):
    """CLIP text tower: token features up to end-of-text ``[B, ctx, width]`` + the native text embedding."""

    modality = "text"
    input_kind = "text"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.width = self.backbone.text_width

    def load(self, source: RawInput, name: str | None = None) -> str:
        return load_text(source if isinstance(source, str) else str(source), self.limits, name)

    def preprocess(self, raws: Sequence[str]) -> torch.Tensor:
        return self.backbone.tokenizer(list(raws)).to(self.device)

    def _forward(self, text: torch.Tensor) -> TokenBatch:
        from open_clip.transformer import text_global_pool

        model = self.backbone.model
        tower = getattr(model, "text", None)
        if tower is not None:  # CustomTextCLIP: the text tower is its own module
            with self.backbone.lock:
                tower.output_tokens = True
                try:
                    pooled, tokens = tower(text)
                finally:
                    tower.output_tokens = False
            mask = _text_mask(text, tokens.shape[1])
            return TokenBatch(tokens, mask, pooled)
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(text).to(cast_dtype) + model.positional_embedding.to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        pooled = text_global_pool(
            x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
        )
        if model.text_projection is not None:
            pooled = (
                model.text_projection(pooled)
                if isinstance(model.text_projection, torch.nn.Linear)
                else pooled @ model.text_projection
            )
        return TokenBatch(x, _text_mask(text, x.shape[1]), pooled)


def _text_mask(text: torch.Tensor, length: int) -> torch.Tensor:
    """Valid positions: up to and including the end-of-text token (the argmax id for CLIP's BPE)."""
    positions = torch.arange(text.shape[1], device=text.device)
    eot = text.argmax(dim=-1, keepdim=True)
    mask = positions.unsqueeze(0) <= eot
    return (
        mask[:, :length]
        if length <= text.shape[1]
        else torch.nn.functional.pad(mask, (0, length - text.shape[1]))
    )
