"""Training batches of cached features, built once per :func:`spaner.training.fit.fit` and sliced per step.

:meth:`TokenBatch.collate` pads a list of per-item tensors into a fresh zeroed batch; done for
every step of every epoch it cost a fifth of the Tux Paint demo's training (zero-filling and
row-by-row copies). :class:`PackedItems` instead keeps a modality's tokens in one flat tensor and
gathers a batch from it in one indexing operation, with the same padding and mask. Two more
savings, both the same result as before:

* When an aligner starts with a LayerNorm over frozen tokens (:class:`ModalityAligner`), the
  normalisation is input-only, so it is done once here instead of every step; the aligner then
  applies only the LayerNorm's learned affine part (folded into its projection).
* When an aligner's output is its native vector alone (a fixed anchor, see
  :meth:`spaner.model.head.NativeHead.native_only`), no tokens are gathered at all.

Token dropout draws the same random numbers as the per-step collation did, so a seeded fit
trains the same weights either way. The flat copy doubles the memory of a modality's token cache
while a fit runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from spaner.encoders.base import ItemTokens, TokenBatch
from spaner.model.network import ModalityAligner

__all__ = ["PackedItems"]


class PackedItems:
    """One modality's training items, packed for fast batches (see the module docstring)."""

    def __init__(
        self,
        items: Sequence[ItemTokens],
        aligner: torch.nn.Module,
        device: torch.device | str | None = None,
    ) -> None:
        """``device``: where the packed tokens live and batches are made (the model's device;
        the CPU when None). Few-shot sets are small, so they are copied there once."""
        if not items:
            raise ValueError("cannot pack an empty list of items")
        self.native_only = isinstance(aligner, ModalityAligner) and aligner.head.native_only()
        self.normalized = isinstance(aligner, ModalityAligner) and not self.native_only
        lengths = [it.tokens.shape[0] for it in items]
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        # row 0 is the padding row (zeros); item i's tokens are rows starts[i] .. starts[i]+len-1
        self.starts = torch.cumsum(torch.tensor([1, *lengths[:-1]]), 0)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.natives: torch.Tensor | None = None
        if all(it.native is not None for it in items):
            natives = torch.stack([it.native for it in items])  # type: ignore[misc]
            self.natives = natives.to(self.device)
        self.width = items[0].tokens.shape[-1]
        self.flat: torch.Tensor | None = None
        self._buffers: dict[int, torch.Tensor] = {}
        if not self.native_only:
            first = items[0].tokens
            flat = torch.cat([first.new_zeros(1, self.width), *(it.tokens for it in items)])
            flat = flat.to(self.device)
            if self.normalized:
                assert isinstance(aligner, ModalityAligner)
                flat = aligner.normalize_tokens(flat)  # a zero row stays zero
            self.flat = flat

    def batch(
        self,
        idx: Sequence[int],
        token_dropout: float,
        gen: torch.Generator | None,
        slot: int = 0,
    ) -> TokenBatch:
        """Items ``idx`` as a padded batch, with token dropout drawn as before packing.

        The tokens live in buffer ``slot``, which the next call for that slot overwrites (a fresh
        batch-sized tensor per step cost more to page in than to fill): use a batch before asking
        for the next one in its slot. Shards of one step that run together use one slot each."""
        index = torch.as_tensor(idx, dtype=torch.long)
        lengths = self.lengths[index]
        longest = max(int(lengths.max()), 1)
        real = torch.arange(longest) < lengths.unsqueeze(1)
        mask = real
        if token_dropout > 0 and gen is not None:
            keep = torch.rand(mask.shape, generator=gen) >= token_dropout
            keep[:, 0] = True
            mask = mask & keep
            mask[mask.sum(1) == 0, 0] = True
        mask = mask.to(self.device)
        native = self.natives[index.to(self.device)] if self.natives is not None else None
        if self.flat is None:  # native-only: the aligner never reads the tokens
            tokens = torch.zeros(len(index), 0, self.width, device=self.device)
            return TokenBatch(tokens, mask[:, :0], native)
        rows = torch.where(real, self.starts[index].unsqueeze(1) + torch.arange(longest), 0)
        rows = rows.to(self.device)
        n = rows.numel() * self.width
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.numel() < n:
            buffer = self._buffers[slot] = self.flat.new_empty(n)
        tokens = buffer[:n].view(rows.numel(), self.width)
        torch.index_select(self.flat, 0, rows.flatten(), out=tokens)
        return TokenBatch(tokens.view(*rows.shape, self.width), mask, native, self.normalized)
