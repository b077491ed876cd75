"""Training batches from packed features (spaner.training.batching) equal the per-step collation they
replace: same padding and mask, same token dropout draws, same embeddings."""

from __future__ import annotations

import torch
from spaner.encoders.base import ItemTokens, TokenBatch

from spaner.model.config import AlignerConfig
from spaner.model.network import LinearAligner, ModalityAligner
from spaner.training.batching import PackedItems

W = 12


def _items(n: int = 20, seed: int = 0, native: bool = False) -> list[ItemTokens]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=g).tolist()
    return [
        ItemTokens(
            torch.randn(t, W, generator=g) * 3 + 1,
            torch.randn(8, generator=g) if native else None,
        )
        for t in lengths
    ]


def _collated(items, idx, dropout, gen) -> TokenBatch:
    """The collation `train.fit` did every step before packing (kept here as the reference)."""
    batch = TokenBatch.collate([items[i] for i in idx])
    if dropout > 0:
        keep = torch.rand(batch.mask.shape, generator=gen) >= dropout
        keep[:, 0] = True
        batch.mask = batch.mask & keep
        batch.mask[batch.mask.sum(1) == 0, 0] = True
    return batch


def _cfg() -> AlignerConfig:
    return AlignerConfig(width=16, heads=2, prompt_len=4, depth=2, dim=8, kind="linear")


def test_a_packed_batch_has_the_collated_tokens_mask_and_dropout() -> None:
    items = _items(native=True)
    packed = PackedItems(items, LinearAligner(W, _cfg(), use_native=True))
    assert not packed.normalized and not packed.native_only
    g_old, g_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for idx in ([3, 0, 7, 19, 4], [11], [2, 2, 9], list(range(20))):
        ref = _collated(items, idx, 0.3, g_old)
        got = packed.batch(idx, 0.3, g_new)
        assert torch.equal(got.tokens, ref.tokens)
        assert torch.equal(got.mask, ref.mask)
        assert torch.equal(got.native, ref.native)
    assert torch.equal(torch.rand(3, generator=g_old), torch.rand(3, generator=g_new))


def test_pre_normalised_tokens_give_the_cross_attention_aligner_the_same_embeddings() -> None:
    torch.manual_seed(0)
    items = _items()
    aligner = ModalityAligner(
        W, AlignerConfig(width=16, heads=2, prompt_len=4, depth=2, dim=8), False
    )
    with torch.no_grad():  # a trained-looking input LayerNorm: its affine part must still apply
        aligner.input_proj[0].weight.uniform_(0.5, 2.0)
        aligner.input_proj[0].bias.normal_()
    aligner.eval()
    prompt = torch.randn(4, 16)
    packed = PackedItems(items, aligner)
    assert packed.normalized
    idx = [5, 1, 17, 8, 0, 12, 3, 9, 14, 6]
    got = packed.batch(idx, 0.0, None)
    assert got.normalized
    ref = TokenBatch.collate([items[i] for i in idx])
    z_got = aligner(prompt, got)
    z_ref = aligner(prompt, ref)
    assert torch.allclose(z_got, z_ref, atol=1e-6)
    # and the same gradients for the trainable parameters
    z_got.sum().backward()
    grads = [p.grad.clone() for p in aligner.parameters()]
    aligner.zero_grad()
    aligner(prompt, ref).sum().backward()
    for a, b in zip(grads, (p.grad for p in aligner.parameters()), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_fixed_anchor_gathers_no_tokens_and_embeds_the_same() -> None:
    torch.manual_seed(0)
    items = _items(native=True)
    cfg = AlignerConfig(width=16, heads=2, prompt_len=4, depth=1, dim=8)
    aligner = ModalityAligner(W, cfg, use_native=True)
    for p in aligner.parameters():
        p.requires_grad_(False)  # as train.fit leaves a fixed anchor
    packed = PackedItems(items, aligner)
    assert packed.native_only and packed.flat is None
    idx = [4, 2, 13]
    g_old, g_new = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    got = packed.batch(idx, 0.1, g_new)
    ref = _collated(items, idx, 0.1, g_old)
    assert torch.allclose(aligner(torch.randn(4, 16), got), aligner(torch.randn(4, 16), ref))
    assert torch.equal(torch.rand(3, generator=g_old), torch.rand(3, generator=g_new))
