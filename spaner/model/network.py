"""The SPANER model: a shared prompt and per-modality cross-attention aligners.

For each modality ``m`` with frozen tokens ``X`` ``[B, T, w_m]``::

    H = proj_m(X) (+ positions)                     # [B, T, width]
    Q = prompt (shared by every modality)           # [P, width]
    for each layer:  Q = Q + CrossAttn(Q, [Q; H]);  Q = Q + FFN(Q)
    z = normalize( head_m(mean(Q)) )                # [B, dim]

Where the encoder has a native space shared with another modality (CLIP's image and
text towers), the head is a zero-initialised residual on the native vector, so an
untrained model *is* the native space and training can only start from there:
``z = normalize(g * normalize(native) + head_m(mean(Q)))`` with a learnable gate ``g`` (init 1).
Where the native vector is in a space of the encoder's own that has a text tower (CLAP's audio),
``native`` is first taken to the unified space by a learned linear map (:mod:`spaner.model.head`),
which the model can fit from texts alone (:mod:`spaner.training.text_bridge`).

The ``linear`` aligner (baseline) pools the tokens as the means of ``linear_segments``
consecutive stretches (a plain mean of per-utterance-normalised audio frames is zero, which
put the baseline at chance) and applies one linear map, with the same native residual. ``prompt_mode="separate"`` gives each modality its own prompt (ablation).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from spaner.encoders.base import TokenBatch
from spaner.errors import ConfigError
from spaner.model.config import AlignerConfig, ModalityConfig, SpanerConfig
from spaner.model.head import NativeHead

__all__ = [
    "SpanerModel",
    "CrossAttentionLayer",
    "ModalityAligner",
    "LinearAligner",
    "dropout_generator",
    "info_nce",
]

_rng = threading.local()


@contextmanager
def dropout_generator(gen: torch.Generator) -> Iterator[None]:
    """Inside the block, on the calling thread only, the aligners' dropout draws its masks from
    ``gen`` instead of torch's global generator. Training shards that run on several threads
    (:mod:`spaner.training.sharded`) then draw the same masks on every run, whichever thread runs first."""
    before = getattr(_rng, "gen", None)
    _rng.gen = gen
    try:
        yield
    finally:
        _rng.gen = before


def _dropout(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    if p <= 0.0:
        return x
    return x * torch.empty_like(x).bernoulli_(1.0 - p, generator=gen) / (1.0 - p)


def _attention(
    mha: nn.MultiheadAttention,
    q: torch.Tensor,
    kv: torch.Tensor,
    pad: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """``mha(q, kv, kv, key_padding_mask=pad)[0]`` in training mode, written out so that its
    dropout on the attention weights draws from ``gen`` (same parameters, same distribution)."""
    width, heads = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    qp = F.linear(q, w[:width], b[:width])
    kp = F.linear(kv, w[width : 2 * width], b[width : 2 * width])
    vp = F.linear(kv, w[2 * width :], b[2 * width :])
    bsz, length, src = q.shape[0], q.shape[1], kv.shape[1]
    qp = qp.view(bsz, length, heads, -1).transpose(1, 2)  # [B, H, L, d]
    kp = kp.view(bsz, src, heads, -1).transpose(1, 2)
    vp = vp.view(bsz, src, heads, -1).transpose(1, 2)
    scores = (qp @ kp.transpose(-2, -1)) / math.sqrt(qp.shape[-1])
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    weights = _dropout(scores.softmax(dim=-1), mha.dropout, gen)
    out = (weights @ vp).transpose(1, 2).reshape(bsz, length, width)
    return mha.out_proj(out)


def _sinusoid(length: int, width: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : width // 2]
    return pe


class CrossAttentionLayer(nn.Module):
    """Prompt positions attend over ``[prompt; tokens]``, then a feed-forward block (pre-norm)."""

    def __init__(self, width: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(width)
        self.ff = nn.Sequential(
            nn.Linear(width, width * ff_mult),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width * ff_mult, width),
        )

    def forward(self, q: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(torch.cat([q, tokens], dim=1))
        pad = torch.cat([torch.zeros(q.shape[:2], dtype=torch.bool, device=q.device), ~mask], dim=1)
        gen = getattr(_rng, "gen", None)
        no_dropout = self.attn.dropout == 0.0 and self.ff[2].p == 0.0
        if gen is None or not self.training or no_dropout:
            q = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=pad, need_weights=False)[0]
            return q + self.ff(self.norm_ff(q))
        q = q + _attention(self.attn, self.norm_q(q), kv, pad, gen)  # see dropout_generator
        first, act, drop, last = self.ff
        return q + last(_dropout(act(first(self.norm_ff(q))), drop.p, gen))


class ModalityAligner(nn.Module):
    """The CA aligner of one modality: input projection, cross-attention layers, pooling, head."""

    def __init__(
        self, in_width: int, cfg: AlignerConfig, use_native: bool, native_in: int | None = None
    ) -> None:
        super().__init__()
        self.positional = cfg.positional
        self.input_proj = nn.Sequential(nn.LayerNorm(in_width), nn.Linear(in_width, cfg.width))
        self.layers = nn.ModuleList(
            CrossAttentionLayer(cfg.width, cfg.heads, cfg.ff_mult, cfg.dropout)
            for _ in range(cfg.depth)
        )
        self.head = NativeHead(cfg.width, cfg.dim, use_native, native_in)

    def forward(self, prompt: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        if self.head.native_only():
            return self.head.from_native(batch.native)
        tokens = batch.tokens
        assert not (batch.normalized and tokens.requires_grad), "normalised tokens are frozen"
        if not batch.normalized:
            tokens = tokens if tokens.requires_grad else self.normalize_tokens(tokens)
        groups = length_groups(batch.mask)
        if len(groups) == 1:
            n = groups[0][1]
            return self._attend(prompt, tokens[:, :n], batch.mask[:, :n], batch.native)
        out: torch.Tensor | None = None
        for idx, n in groups:
            native = batch.native[idx] if batch.native is not None else None
            z = self._attend(prompt, tokens[idx, :n], batch.mask[idx, :n], native)
            if out is None:
                out = z.new_empty(len(batch), z.shape[1])
            out[idx] = z
        assert out is not None
        return out

    def normalize_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """The input LayerNorm without its affine part, on frozen tokens (no gradient)."""
        norm = self.input_proj[0]
        with torch.no_grad():
            return F.layer_norm(tokens, norm.normalized_shape, None, None, norm.eps)

    def _project(self, tokens: torch.Tensor) -> torch.Tensor:
        """``input_proj`` (LayerNorm, then Linear) of frozen tokens, folded into one product:
        ``(x̂·γ + β)Wᵀ + b = x̂(W·γ)ᵀ + (Wβ + b)``. The normalised tokens ``x̂`` need no gradient
        (:meth:`normalize_tokens`, done before the batch is split in length groups, or once per
        fit by :mod:`spaner.training.batching`), so training skips the LayerNorm's backward and the
        product's input gradient (a third of the image aligner's cost on EfficientNet's 49 tokens
        of 1280). Same output to rounding. Tokens that need a gradient take ``input_proj`` whole."""
        norm, linear = self.input_proj
        if tokens.requires_grad:
            return self.input_proj(tokens)
        return F.linear(
            tokens, linear.weight * norm.weight, linear.bias + linear.weight @ norm.bias
        )

    def _attend(
        self,
        prompt: torch.Tensor,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        native: torch.Tensor | None,
    ) -> torch.Tensor:
        h = self._project(tokens)
        if self.positional:
            h = h + _sinusoid(h.shape[1], h.shape[2], h.device)
        q = prompt.unsqueeze(0).expand(h.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, h, mask)
        return self.head(q.mean(dim=1), native)


def length_groups(
    mask: torch.Tensor, min_group: int = 8, slack: float = 1.5
) -> list[tuple[torch.Tensor, int]]:
    """Split a padded batch into groups of similar length: ``[(item indices, tokens to keep)]``.

    A batch is padded to its longest item, and every layer of an aligner pays for the padding: a
    batch of Tux Paint sounds (median 21 tokens, longest 282) was 85% padding. Past its last real
    token an item is all padding, which attention masks out, so cutting it off gives the same
    embedding (to float rounding). Items are sorted by length and a group closes when the next
    item is more than ``slack`` times its first and it holds ``min_group`` items; one group
    (the whole batch, cut to its longest item) when splitting would not save a third.
    """
    b, t = mask.shape
    last = t - mask.flip(1).to(torch.int8).argmax(1)  # one past each item's last real token
    last = torch.where(mask.any(1), last, torch.ones_like(last))
    longest = int(last.max()) if b else 1
    order = torch.argsort(last, stable=True)
    lengths = last[order].tolist()
    groups: list[tuple[torch.Tensor, int]] = []
    start = 0
    for i in range(1, b + 1):
        if i == b or (i - start >= min_group and lengths[i] > slack * lengths[start]):
            groups.append((order[start:i], lengths[i - 1]))
            start = i
    if len(groups) <= 1 or 1.5 * sum(len(g) * n for g, n in groups) > b * longest:
        return [(torch.arange(b), longest)]
    return groups


def segment_means(tokens: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """Means of ``segments`` equal, consecutive stretches of each item's real tokens, concatenated:
    ``[B, segments * width]`` (``segments=1`` is the masked mean). Keeps coarse order/layout, which a
    plain mean throws away."""
    lengths = mask.sum(1, keepdim=True).clamp_min(1)  # [B, 1]
    pos = torch.cumsum(mask.long(), dim=1) - 1  # rank of each real token
    seg = (pos * segments // lengths).clamp(0, segments - 1)  # [B, T]
    onehot = F.one_hot(seg, segments).to(tokens.dtype) * mask.unsqueeze(-1).to(
        tokens.dtype
    )  # [B, T, S]
    sums = torch.einsum("bts,btw->bsw", onehot, tokens)
    counts = onehot.sum(1).unsqueeze(-1)  # [B, S, 1]
    means = torch.where(
        counts > 0, sums / counts.clamp_min(1.0), sums.sum(1, keepdim=True) / lengths.unsqueeze(-1)
    )
    return means.flatten(1)


class LinearAligner(nn.Module):
    """Baseline: masked segment means of the tokens, then one linear map (same native residual, same loss)."""

    def __init__(
        self, in_width: int, cfg: AlignerConfig, use_native: bool, native_in: int | None = None
    ) -> None:
        super().__init__()
        self.segments = int(cfg.linear_segments)
        self.head = NativeHead(in_width * self.segments, cfg.dim, use_native, native_in)

    def forward(self, prompt: torch.Tensor | None, batch: TokenBatch) -> torch.Tensor:
        return self.head(segment_means(batch.tokens, batch.mask, self.segments), batch.native)


class SpanerModel(nn.Module):
    """Shared prompt + one aligner per modality; ``embed(modality, tokens) -> unit vectors``."""

    def __init__(self, config: SpanerConfig) -> None:
        super().__init__()
        config.aligner.validate()
        self.config = config
        a = config.aligner
        self.prompt = nn.Parameter(torch.randn(a.prompt_len, a.width) * 0.02)
        self.prompts = nn.ParameterDict()
        self.aligners = nn.ModuleDict()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / a.init_temperature)))
        for modality, mcfg in config.modalities.items():
            self._build_modality(modality, mcfg)

    @property
    def modalities(self) -> list[str]:
        return list(self.config.modalities)

    @property
    def dim(self) -> int:
        return self.config.aligner.dim

    def _build_modality(self, modality: str, mcfg: ModalityConfig) -> None:
        a = self.config.aligner
        if mcfg.use_native and mcfg.native_dim != a.dim:
            raise ConfigError(
                f"modality {modality!r} uses its native space of dim {mcfg.native_dim}, but the unified dim is {a.dim}"
            )
        if mcfg.native_map and (mcfg.use_native or not mcfg.native_dim):
            raise ConfigError(
                f"modality {modality!r}: a native map needs a native vector outside the unified space"
            )
        cls = ModalityAligner if a.kind == "cross_attention" else LinearAligner
        native_in = int(mcfg.native_dim) if mcfg.native_map else None  # type: ignore[arg-type]
        self.aligners[modality] = cls(mcfg.width, a, mcfg.use_native, native_in)
        if a.prompt_mode == "separate" and a.kind == "cross_attention":
            self.prompts[modality] = nn.Parameter(self.prompt.detach().clone())

    def add_modality(self, modality: str, mcfg: ModalityConfig) -> None:
        """Plug in a new modality (its aligner, and its own prompt when prompts are separate)."""
        if modality in self.config.modalities:
            raise ConfigError(f"modality {modality!r} is already in the model")
        self.config.modalities[modality] = mcfg
        self._build_modality(modality, mcfg)

    def prompt_for(self, modality: str) -> torch.Tensor:
        if self.config.aligner.prompt_mode == "separate" and modality in self.prompts:
            return self.prompts[modality]
        return self.prompt

    def embed(self, modality: str, batch: TokenBatch) -> torch.Tensor:
        if modality not in self.aligners:
            raise ConfigError(
                f"the model has no aligner for modality {modality!r} (has: {', '.join(self.modalities)})"
            )
        prompt = self.prompt_for(modality)
        return self.aligners[modality](prompt, batch.to(prompt.device))

    def trainable_for(self, modality: str) -> list[nn.Parameter]:
        """Parameters that :func:`spaner.training.fit.extend` trains for ``modality``: its aligner only
        (plus its own prompt when prompts are separate)."""
        params = list(self.aligners[modality].parameters())
        if self.config.aligner.prompt_mode == "separate" and modality in self.prompts:
            params.append(self.prompts[modality])
        return params


def info_nce(
    za: torch.Tensor,
    zb: torch.Tensor,
    la: torch.Tensor,
    lb: torch.Tensor,
    logit_scale: torch.Tensor,
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between two modalities.

    Positives are pairs with the same label (the same concept, or the same manifest line).
    Rows without any positive are ignored.
    """
    scale = logit_scale.clamp(max=math.log(100.0)).exp()
    logits = scale * za @ zb.T
    pos = (la.unsqueeze(1) == lb.unsqueeze(0)).to(logits.dtype)
    losses = []
    for lg, p in ((logits, pos), (logits.T, pos.T)):
        has = p.sum(1) > 0
        if has.any():
            target = p[has] / p[has].sum(1, keepdim=True)
            losses.append(-(target * F.log_softmax(lg[has], dim=1)).sum(1).mean())
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()
