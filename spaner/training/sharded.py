"""One training step on several threads: each batch in shards, the loss over the whole batch.

The aligners are small: a step is hundreds of small matrix products and element-wise
operations, too small for torch's own threads (on 2 cores, 2 torch threads made training twice
as slow as 1). Shards of the batch do scale: each worker thread embeds its shard and
back-propagates it with torch on one thread, and torch releases the GIL inside its operators.
On the 2-core build VM two shards ran a step's forward and backward 1.7 times as fast as one
thread on the whole batch (``benchmarks/fit_speed.py --workers``, BENCHMARKS.md).

The result is the full-batch step, to float rounding:

1. each shard's embeddings are computed on its own thread;
2. the loss (contrastive: every item against the whole batch) is computed once, on the
   concatenated embeddings, and differentiated only as far as the embeddings;
3. each thread back-propagates its shard's part of that gradient into the parameters;
4. the shards' parameter gradients are summed in shard order.

Every random draw is reproducible: token dropout and each shard's dropout seed are drawn on the
calling thread in a fixed order, and a shard's dropout draws from its own generator
(:func:`spaner.model.dropout_generator`). The weights depend on the number of shards as they do
on the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from spaner.model.network import SpanerModel, dropout_generator
from spaner.training.batching import PackedItems

__all__ = ["ShardedStep"]


class ShardedStep:
    """Runs steps in ``workers`` shards on a thread pool, with torch on one thread (the whole
    process's setting, restored by ``close()``); ``close()`` (or ``with``) ends it."""

    def __init__(self, workers: int) -> None:
        if workers < 2:
            raise ValueError("a sharded step needs at least 2 workers")
        self.workers = workers
        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="spaner-shard")

    def __enter__(self) -> ShardedStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        torch.set_num_threads(self._torch_threads)

    def _shards(self, by_mod: Mapping[str, Sequence[int]]) -> list[dict[str, list[int]]]:
        shards: list[dict[str, list[int]]] = [{} for _ in range(self.workers)]
        for m, idx in by_mod.items():
            n = len(idx)
            for k in range(self.workers):
                part = list(idx[k * n // self.workers : (k + 1) * n // self.workers])
                if part:
                    shards[k][m] = part
        return [s for s in shards if s]

    def step(
        self,
        model: SpanerModel,
        packed: Mapping[str, PackedItems],
        by_mod: Mapping[str, Sequence[int]],
        token_dropout: float,
        gen: torch.Generator,
        loss_of: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        params: Sequence[torch.nn.Parameter],
    ) -> torch.Tensor:
        """Forward and backward of one batch; leaves the summed gradients in ``p.grad`` (which
        must be ``None`` or zero on entry) and returns the loss. ``loss_of`` maps the batch's
        embeddings (per modality, in ``by_mod`` order) to the loss."""
        shards = self._shards(by_mod)
        batches = [
            {m: packed[m].batch(idx, token_dropout, gen, slot=k) for m, idx in shard.items()}
            for k, shard in enumerate(shards)
        ]
        seeds = torch.randint(0, 2**62, (len(shards),), generator=gen).tolist()

        def forward(k: int) -> dict[str, torch.Tensor]:
            with torch.enable_grad(), dropout_generator(torch.Generator().manual_seed(seeds[k])):
                return {m: model.embed(m, b) for m, b in batches[k].items()}

        outs = list(self._pool.map(forward, range(len(shards))))
        # the loss over the whole batch, differentiated as far as the (detached) embeddings
        leaves = {
            m: torch.cat([o[m] for o in outs if m in o]).detach().requires_grad_() for m in by_mod
        }
        loss = loss_of(leaves)
        loss.backward()  # gradients of the embeddings, and of parameters the loss uses directly
        wanted = [p for p in params if p.requires_grad]

        def backward(k: int) -> list[torch.Tensor | None]:
            roots, grads = [], []
            for m, z in outs[k].items():
                if not z.requires_grad or leaves[m].grad is None:  # a fixed anchor, or unused
                    continue
                start = sum(o[m].shape[0] for o in outs[:k] if m in o)
                roots.append(z)
                grads.append(leaves[m].grad[start : start + z.shape[0]])
            if not roots:
                return [None] * len(wanted)
            with torch.enable_grad():
                return list(torch.autograd.grad(roots, wanted, grads, allow_unused=True))

        for shard_grads in self._pool.map(backward, range(len(shards))):  # summed in shard order
            for p, g in zip(wanted, shard_grads, strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        return loss.detach()
