"""The SPANER model: shared prompt, aligners, native residual, loss; checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from spaner.encoders.base import TokenBatch

from spaner.errors import CheckpointError, ConfigError
from spaner.model.checkpoint import checkpoint_hash, load_checkpoint, save_checkpoint
from spaner.model.config import AlignerConfig, ModalityConfig, SpanerConfig
from spaner.model.network import SpanerModel, info_nce, length_groups


def _config(**aligner) -> SpanerConfig:
    a = AlignerConfig(width=32, heads=2, prompt_len=4, depth=2, dim=16, **aligner)
    return SpanerConfig(
        aligner=a,
        modalities={
            "text": ModalityConfig("t", 24),
            "image": ModalityConfig("i", 40),
            "audio": ModalityConfig("a", 12),
        },
    )


def _batch(n: int, t: int, w: int, seed: int = 0) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n, t, w, generator=g)
    mask = torch.ones(n, t, dtype=torch.bool)
    mask[0, t // 2 :] = False
    return TokenBatch(tokens, mask)


def test_embeddings_are_unit_vectors_of_the_unified_dim():
    model = SpanerModel(_config()).eval()
    for m, w in (("text", 24), ("image", 40), ("audio", 12)):
        z = model.embed(m, _batch(3, 7, w))
        assert z.shape == (3, 16)
        assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_one_prompt_tensor_is_shared_by_every_modality():
    model = SpanerModel(_config())
    assert all(model.prompt_for(m) is model.prompt for m in model.modalities)
    sep = SpanerModel(_config(prompt_mode="separate"))
    prompts = [sep.prompt_for(m) for m in sep.modalities]
    assert len({id(p) for p in prompts}) == 3 and all(p is not sep.prompt for p in prompts)


def test_padding_is_ignored():
    model = SpanerModel(_config()).eval()
    b = _batch(2, 6, 24)
    z1 = model.embed("text", b)
    b.tokens[0, 3:] = 1e3  # garbage in masked positions
    assert torch.allclose(z1, model.embed("text", b), atol=1e-6)


def test_items_of_very_different_lengths_embed_as_they_would_alone():
    """A batch of short clips and a few long ones runs in length groups (the padding is cut off);
    every item's embedding is the one it gets alone, in its place in the batch."""
    model = SpanerModel(_config()).eval()
    g = torch.Generator().manual_seed(1)
    lengths = [3, 40, 5, 4, 6, 90, 7, 3, 5, 4, 6, 5, 8, 4, 3, 6, 5, 7, 4, 6, 5, 3]
    tokens = torch.randn(len(lengths), max(lengths), 12, generator=g)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    mask[1, 10] = False  # a dropped token inside an item (token dropout) is not its end
    batch = TokenBatch(tokens, mask)
    groups = length_groups(mask)
    assert len(groups) > 1 and sorted(torch.cat([i for i, _ in groups]).tolist()) == list(
        range(len(lengths))
    )
    assert max(n for _, n in groups) == 90 and min(n for _, n in groups) < 10
    together = model.embed("audio", batch)
    alone = torch.cat(
        [model.embed("audio", TokenBatch(tokens[i : i + 1], mask[i : i + 1])) for i in range(22)]
    )
    assert torch.allclose(together, alone, atol=1e-5)
    # similar lengths: one group, cut to the longest real token
    assert [(len(i), n) for i, n in length_groups(mask[[0, 2, 3]])] == [(3, 5)]


def test_the_folded_input_projection_equals_layernorm_then_linear() -> None:
    """Frozen tokens are projected with the LayerNorm folded into the Linear: same output and
    the same gradients for the LayerNorm's and the Linear's parameters."""
    model = SpanerModel(_config()).train()
    aligner = model.aligners["image"]
    norm, linear = aligner.input_proj
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    tokens = torch.randn(5, 7, 40, generator=torch.Generator().manual_seed(2))
    grads = []
    folded = lambda t: aligner._project(aligner.normalize_tokens(t))  # noqa: E731
    for project in (folded, aligner.input_proj):
        model.zero_grad()
        out = project(tokens)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append(
            (out.detach(), *(p.grad.clone() for p in (*norm.parameters(), *linear.parameters())))
        )
    for folded, plain in zip(*grads, strict=True):
        assert torch.allclose(folded, plain, atol=1e-4)


def test_untrained_model_reproduces_the_native_space():
    cfg = SpanerConfig(
        aligner=AlignerConfig(width=32, heads=2, dim=8),
        modalities={
            "text": ModalityConfig("t", 24, native_space="s", native_dim=8, use_native=True),
            "image": ModalityConfig("i", 40, native_space="s", native_dim=8, use_native=True),
        },
    )
    model = SpanerModel(cfg).eval()
    b = _batch(4, 5, 24)
    b.native = torch.randn(4, 8)
    assert torch.allclose(model.embed("text", b), F.normalize(b.native, dim=-1), atol=1e-6)
    with pytest.raises(ConfigError, match="native"):
        bad = SpanerConfig(
            aligner=AlignerConfig(width=32, heads=2, dim=16), modalities=cfg.modalities
        )
        SpanerModel(bad)


def test_linear_aligner_and_config_validation():
    model = SpanerModel(_config(kind="linear")).eval()
    assert model.embed("audio", _batch(2, 3, 12)).shape == (2, 16)
    with pytest.raises(ConfigError, match="divisible"):
        SpanerModel(SpanerConfig(aligner=AlignerConfig(width=30, heads=4)))


def test_info_nce_prefers_aligned_pairs():
    z = F.normalize(torch.randn(6, 8), dim=-1)
    labels = torch.arange(6)
    scale = torch.tensor(2.0)
    aligned = info_nce(z, z, labels, labels, scale)
    shuffled = info_nce(
        z, z[torch.randperm(6, generator=torch.Generator().manual_seed(1))], labels, labels, scale
    )
    assert aligned < shuffled
    # multi-positive: two items of one concept are both positives
    same = z[:1].expand(2, -1)
    two = info_nce(same, same, torch.tensor([0, 0]), torch.tensor([0, 0]), scale)
    assert torch.isclose(two, torch.log(torch.tensor(2.0)), atol=1e-5)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model = SpanerModel(_config(prompt_mode="separate"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    path = save_checkpoint(model, tmp_path / "ckpt", extra={"note": "x"})
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
    ]  # no pickle
    loaded, extra = load_checkpoint(path)
    assert extra == {"note": "x"}
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    batch = _batch(2, 4, 40)
    model.eval()
    assert torch.equal(model.embed("image", batch), loaded.embed("image", batch))
    h = checkpoint_hash(path)
    save_checkpoint(loaded, path, extra={"note": "x"})  # atomic overwrite of the same directory
    assert checkpoint_hash(path) == h


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a SPANER checkpoint"):
        load_checkpoint(tmp_path)
    path = save_checkpoint(SpanerModel(_config()), tmp_path / "c")
    doc = json.loads((path / "config.json").read_text())
    doc["spaner"]["aligner"]["width"] = 64
    (path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)
    (path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="invalid checkpoint config"):
        load_checkpoint(path)
    other = tmp_path / "not-a-ckpt"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(SpanerModel(_config()), other)
    assert (other / "precious.txt").read_text() == "keep me"


def test_a_fixed_anchor_skips_cross_attention_with_the_same_result() -> None:
    """A head whose residual is zero and will not learn outputs the native vector alone; the
    aligner then skips its cross-attention (the demo's text anchor), with an identical result.
    A head that can learn (a trainable anchor at init) still runs in full, so it gets gradients."""
    from spaner.model.config import AlignerConfig
    from spaner.model.network import ModalityAligner

    torch.manual_seed(0)
    cfg = AlignerConfig(width=16, heads=2, prompt_len=4, depth=1, dim=8)
    aligner = ModalityAligner(12, cfg, use_native=True)
    prompt = torch.randn(4, 16)
    batch = TokenBatch(torch.randn(3, 5, 12), torch.ones(3, 5, dtype=torch.bool), torch.randn(3, 8))
    full = aligner.head(torch.randn(3, 16), batch.native)  # a zero residual: any pooled input
    with torch.no_grad():
        assert aligner.head.native_only()
        assert torch.allclose(aligner(prompt, batch), full, atol=1e-6)
    assert not aligner.head.native_only()  # grad enabled and trainable: the full path
    aligner(prompt, batch).sum().backward()
    assert aligner.head.proj.weight.grad is not None
    for p in aligner.parameters():
        p.requires_grad_(False)
    assert aligner.head.native_only()  # frozen, as train.fit leaves a fixed anchor
    with torch.no_grad():
        aligner.head.proj.bias.fill_(0.1)
    assert not aligner.head.native_only()  # a trained residual is never skipped
