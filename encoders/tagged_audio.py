"""Whisper's tokens plus a music tagger's belief as a vector in the text encoder's space.

The audio side of the image encoder's ImageNet label vectors (:mod:`.label_space`): musicnn's
50 MagnaTagATune tags (:mod:`.musicnn`) are embedded once by MiniLM; a clip's vector is the
mean of its ``top_k`` tags' embeddings weighted by their probabilities (the mean over the clip's
3-s patches). With the text encoder's native space, the unified space treats it as the audio
aligner's zero-init residual starting point, as it does the photos' label vectors.

The tagger's weights are a safetensors file written by ``encoders/convert_musicnn.py``
(``tagger=PATH``); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from spaner.errors import EncoderLoadError

from .base import TokenBatch
from .musicnn import MTT_TAGS, Musicnn, musicnn_log_mel, patches
from .whisper_encoder import WhisperEncoder

__all__ = ["TaggedWhisperEncoder", "tag_vectors"]


def tag_vectors(probs: torch.Tensor, matrix: torch.Tensor, top_k: int) -> torch.Tensor:
    """``[B, dim]`` unit vectors: the ``top_k`` tag embeddings (``matrix`` ``[tags, dim]``) of each
    row of ``probs`` ``[B, tags]``, weighted by their probabilities."""
    top, idx = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    top = top / top.sum(dim=-1, keepdim=True).clamp_min(1e-8)
    return F.normalize(torch.einsum("bk,bkd->bd", top, matrix[idx]), dim=-1)


class TaggedWhisperEncoder(WhisperEncoder):
    """:class:`WhisperEncoder` tokens with a native vector from musicnn's tags (module doc)."""

    def __init__(
        self,
        name: str,
        tagger: str | None = None,
        tag_top_k: int = 5,
        tag_text: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        if not tagger or not Path(tagger).is_file():
            raise EncoderLoadError(
                "the tagged Whisper encoder needs musicnn's weights: convert them once with "
                "`python -m spaner.encoders.convert_musicnn WHEEL --out FILE` and pass tagger=FILE"
            )
        from safetensors.torch import load_file

        from .hf_text_encoder import HFTextEncoder, minilm_path

        self.tagger = Musicnn().eval()
        self.tagger.load_state_dict(load_file(tagger))
        for p in self.tagger.parameters():
            p.requires_grad_(False)
        text = tag_text or minilm_path()
        words = HFTextEncoder("musicnn-tags", model=text, tokenizer=text)
        batch = words.encode(list(MTT_TAGS))
        assert batch.native is not None
        self._tags = batch.native.float()
        self.native_space, self.native_dim = words.native_space, int(self._tags.shape[1])
        self.tag_top_k = int(tag_top_k)
        self._args.update({"tagger": str(tagger), "tag_top_k": self.tag_top_k})
        if tag_text:
            self._args["tag_text"] = tag_text

    def preprocess(self, raws: Sequence[torch.Tensor]) -> tuple[Any, list[torch.Tensor]]:
        return super().preprocess(raws), [patches(musicnn_log_mel(w)) for w in raws]

    def tag_probs(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """``[B, 50]``: each clip's tag probabilities, the mean over its patches."""
        with torch.no_grad():
            logits, _ = self.tagger(torch.cat(clips))
        probs = torch.sigmoid(logits.float())
        sizes = [len(c) for c in clips]
        return torch.stack([p.mean(0) for p in probs.split(sizes)])

    def _forward(self, batch: tuple[Any, list[torch.Tensor]]) -> TokenBatch:
        groups, clips = batch
        out = super()._forward(groups)
        native = tag_vectors(self.tag_probs(clips), self._tags, self.tag_top_k)
        return TokenBatch(out.tokens, out.mask, native)
