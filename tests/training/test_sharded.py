"""Training in shards on threads (TrainConfig.workers): the full-batch step, reproducibly."""

from __future__ import annotations

import pytest
import torch

from spaner.model.config import TrainConfig
from spaner.model.network import CrossAttentionLayer, _attention, dropout_generator
from spaner.pipeline import Spaner
from spaner.training.batching import PackedItems
from spaner.training.fit import _loss
from spaner.training.sharded import ShardedStep

TEXT_IMAGE = {"text": "tiny-bert-text"}


def _layer(dropout: float) -> CrossAttentionLayer:
    torch.manual_seed(0)
    return CrossAttentionLayer(width=16, heads=4, ff_mult=2, dropout=dropout)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    q, tokens = torch.randn(3, 4, 16, generator=g), torch.randn(3, 7, 16, generator=g)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 3:] = False  # padding is masked out
    mask[2, 1:] = False
    return q, tokens, mask


def test_the_written_out_attention_is_multihead_attention() -> None:
    layer = _layer(dropout=0.0).train()  # no dropout: both must give the same numbers
    q, tokens, mask = _inputs()
    kv = torch.cat([q, tokens], dim=1)
    pad = torch.cat([torch.zeros(3, 4, dtype=torch.bool), ~mask], dim=1)
    expected = layer.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
    got = _attention(layer.attn, q, kv, pad, torch.Generator().manual_seed(0))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got[0], _attention(layer.attn, q, kv, ~pad, torch.Generator())[0])


def test_dropout_from_a_generator_is_reproducible_and_is_dropout() -> None:
    layer = _layer(dropout=0.5).train()
    q, tokens, mask = _inputs()
    outs = []
    for seed in (3, 3, 4):
        with dropout_generator(torch.Generator().manual_seed(seed)):
            outs.append(layer(q, tokens, mask))
    assert torch.equal(outs[0], outs[1])  # same generator state, same masks
    assert not torch.allclose(outs[0], outs[2])  # another seed drops other units
    with dropout_generator(torch.Generator().manual_seed(0)):
        eval_out = layer.eval()(q, tokens, mask)
    assert torch.allclose(eval_out, layer(q, tokens, mask))  # eval mode: no dropout at all


@pytest.fixture
def tiny(paired_set):
    sp = Spaner.from_profile(
        "tiny", modalities=["text", "image"], encoders=TEXT_IMAGE, aligner={"dropout": 0.0}
    )
    data = sp.prepare(paired_set, TrainConfig(shots=5, seed=0))
    return sp, data


def test_a_sharded_step_gives_the_full_batch_gradient(tiny) -> None:
    sp, data = tiny
    model = sp.model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        packed = {
            m: PackedItems(f.items, model.aligners[m]) for m, f in data.train.modalities.items()
        }
    by_mod = {m: list(range(len(f.items)))[::-1] for m, f in data.train.modalities.items()}
    labels = {m: data.train.modalities[m].labels[idx] for m, idx in by_mod.items()}
    pairs = [("image", "text")]
    cfg = TrainConfig()

    embs = {m: model.embed(m, packed[m].batch(idx, 0.0, None)) for m, idx in by_mod.items()}
    full_loss = _loss(model, embs, labels, pairs, cfg, None)
    full = torch.autograd.grad(full_loss, params)

    for workers in (2, 3):
        for p in params:
            p.grad = None
        with ShardedStep(workers) as step:
            loss = step.step(
                model,
                packed,
                by_mod,
                0.0,
                torch.Generator().manual_seed(0),
                lambda e: _loss(model, e, labels, pairs, cfg, None),
                params,
            )
        assert torch.allclose(loss, full_loss, atol=1e-6)
        for p, g in zip(params, full, strict=True):
            assert p.grad is not None and torch.allclose(p.grad, g, atol=1e-5, rtol=1e-4)


def test_training_in_shards_is_deterministic_and_learns(paired_set) -> None:
    states, losses = [], []
    for _ in range(2):
        sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
        threads = torch.get_num_threads()
        result = sp.fit(
            paired_set, TrainConfig(shots=3, epochs=6, seed=7, workers=2), progress=False
        )
        assert torch.get_num_threads() == threads  # restored after the fit
        states.append(sp.model.state_dict())
        losses.append(result.train_loss)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert losses[0][-1] < losses[0][0]


def test_workers_must_be_positive() -> None:
    with pytest.raises(Exception, match="workers"):
        TrainConfig(workers=0).validate()
