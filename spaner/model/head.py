"""The head of an aligner: pooled features (and the encoder's native vector) into the unified space.

Where the encoder's native space *is* the unified one (CLIP's image and text towers share it),
the head is a zero-initialised residual on the native vector, so an untrained model is the
native space. Where the native vector is in the encoder's own space (CLAP's audio beside its
text), a learned linear map takes it to the unified space first (:attr:`NativeHead.native_map`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NativeHead"]


class NativeHead(nn.Module):
    """Maps pooled features to the unified space; a zero-init residual on the native vector if any.

    ``native_in``: the native vector is in the encoder's own space of that dim (not the unified
    one) and reaches the unified space through ``native_map``, a learned linear map (initialised
    orthogonal: an untrained model keeps the encoder's geometry). Aligning through text trains
    that map alone (:mod:`spaner.training.text_bridge`)."""

    def __init__(
        self, width: int, dim: int, use_native: bool, native_in: int | None = None
    ) -> None:
        super().__init__()
        self.use_native = use_native or native_in is not None
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, dim)
        self.native_map: nn.Linear | None = None
        if native_in is not None:
            self.native_map = nn.Linear(native_in, dim, bias=False)
            nn.init.orthogonal_(self.native_map.weight)
        if self.use_native:
            nn.init.zeros_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
            # learnable weight of the native vector (starts at 1: the untrained model *is* the native
            # space); lets training lean away from a weak native space instead of fighting it
            self.native_gate = nn.Parameter(torch.ones(()))

    def native_only(self) -> bool:
        """True when the output is the native vector alone and nothing here will learn: a fixed
        anchor (``anchor_trainable=False``), whose residual stays exactly zero. Its aligner can then
        skip the cross-attention, which cannot change the result."""
        frozen = not (torch.is_grad_enabled() and self.proj.weight.requires_grad)
        return (
            self.use_native
            and frozen
            and not bool(self.proj.weight.any())
            and not bool(self.proj.bias.any())
        )

    def _native_term(self, native: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        if native is None:
            raise ValueError(
                "this modality's head is a residual on the native vector, but none was given"
            )
        n = F.normalize(native.to(dtype), dim=-1)
        if self.native_map is not None:
            n = F.normalize(self.native_map(n), dim=-1)
        return self.native_gate * n

    def from_native(self, native: torch.Tensor | None) -> torch.Tensor:
        """The output when :meth:`native_only` holds (the residual is exactly zero)."""
        return F.normalize(self._native_term(native, self.proj.weight.dtype), dim=-1)

    def forward(self, pooled: torch.Tensor, native: torch.Tensor | None) -> torch.Tensor:
        z = self.proj(self.norm(pooled))
        if self.use_native:
            z = self._native_term(native, z.dtype) + z
        return F.normalize(z, dim=-1)
