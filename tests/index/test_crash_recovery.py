"""SIGKILL a writer mid-run; the reopened store must be consistent and keep every acked batch.

The kill point comes from the writer's progress: the test kills it on reading its n-th batch
acknowledgement (n seeded per case), and the writer waits for the kill once it has acknowledged
batch n+1, so the kill lands in the same batch on a fast and on a slow machine.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
from spaner.index import FaissConfig, create_store, open_store
from store_helpers import DIM

BATCH = 40

WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from spaner.index import EmbeddingSpace, Item, open_store
    store = open_store(sys.argv[1], EmbeddingSpace("ckpt-aaaa", {dim}))
    rng = np.random.default_rng(int(sys.argv[2]))
    kill_after = int(sys.argv[3])
    for b in range(10_000):
        x = rng.standard_normal(({batch}, {dim})).astype("float32")
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = store.add(x, [Item("image", concept=f"b{{b}}", content=f"{{b}}-{{i}}".encode(), extra={{"transcript": f"batch{{b}} item{{i}}"}}) for i in range({batch})])
        print(json.dumps({{"batch": b, "ids": ids.tolist()}}), flush=True)
        if b >= kill_after:  # batch kill_after + 1 acknowledged: wait for the kill
            threading.Event().wait()
        if b % 7 == 3:
            store.save()          # checkpoint the FAISS cache now and then
        if b % 5 == 4:
            store.delete(ids[:2].tolist())
            print(json.dumps({{"deleted": ids[:2].tolist()}}), flush=True)
    """
).replace("import sys,", "import json, sys, threading,")


@pytest.mark.slow
@pytest.mark.parametrize(("factory", "seed"), [("Flat", 1), ("HNSW8", 2)])
def test_sigkill_mid_write_then_reopen_is_consistent(tmp_path, space, factory, seed):
    path = tmp_path / "store"
    create_store(path, space, config=FaissConfig(factory=factory)).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(dim=DIM, batch=BATCH))
    kill_after = random.Random(seed).randint(20, 30)  # batches acknowledged before the kill
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(seed), str(kill_after)],
        stdout=subprocess.PIPE,
        text=True,
    )
    acked: list[list[int]] = []
    deleted: set[int] = set()
    try:
        while len(acked) < kill_after:
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "ids" in msg:
                acked.append(msg["ids"])
            else:
                deleted.update(msg["deleted"])
        assert proc.poll() is None, "the writer exited before its kill point"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(acked) == kill_after, "writer did not make progress"

    with open_store(path, space) as store:
        stats = store.stats()
        assert stats["count"] == stats["index_count"]
        present = set(store.meta.ids_matching(None).tolist())
        for b, ids in enumerate(acked):
            # the writer deletes ids[:2] of every 5th batch right after acking it (the
            # deletion ack may not have been read before the kill)
            may_be_deleted = set(ids[:2]) if b % 5 == 4 else set()
            assert set(ids) - deleted - may_be_deleted <= present, b
            assert not deleted & present
        by_concept = stats["by_concept"]
        for concept, n in by_concept.items():  # no partial batch: each batch whole minus deletes
            assert n in (BATCH, BATCH - 2), (concept, n)
        live = [i for ids in acked for i in ids[2:]]
        sample = live[:: max(1, len(live) // 40)]
        vecs = store.vectors(sample)
        _, got = store.search_ids(vecs, k=1)
        assert got[:, 0].tolist() == sample  # searchable: each finds itself first
        for i in sample[:5]:
            assert store.content(i)  # content file survived
        # the full-text index holds exactly the stored items (same transactions)
        assert store.meta.lexical_rows() == store.meta.expected_lexical_rows()
        assert len(store.meta.lexical_rows()) == len(present)
        for b, ids in enumerate(acked[-3:], start=len(acked) - 3):
            hits = [i for i, _ in store.lexical_search(f"batch{b}", 100)]
            assert sorted(hits) == sorted(set(ids) & present)
    with open_store(path, space) as again:
        assert again.last_repair.clean  # repair was checkpointed
        assert again.count() == again.stats()["index_count"] == len(present)
