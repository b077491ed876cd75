"""Stores written by an earlier SPANER open with today's code (issue 16, item 6).

``tests/fixtures/store_v1`` was written by the code before this round (format version 1,
see tests/fixtures/README.md). A copy is opened by the index layer and by the service, and
its vectors are checked against its own checkpoint's embedding of the stored content.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1"


@pytest.fixture()
def old_store(tmp_path: Path) -> Path:
    dest = tmp_path / "store"
    shutil.copytree(FIXTURE, dest)
    return dest


def test_fixture_is_format_1() -> None:
    doc = json.loads((FIXTURE / "store.json").read_text())
    assert doc["format_version"] == 1


def test_index_layer_opens_old_store_and_vectors_match(old_store: Path) -> None:
    from spaner.index import EmbeddingSpace, Item, open_store

    from spaner.pipeline import Spaner

    sp = Spaner.load(old_store / "checkpoint")
    space = EmbeddingSpace(sp.space_id, int(sp.model.dim))
    with open_store(old_store, space) as store:
        assert store.count() == 6
        ids = store.ids().tolist()
        metas = store.get(ids)
        assert sorted(m["modality"] for m in metas) == ["audio", "image", "image"] + ["text"] * 3
        for i, m in zip(ids, metas, strict=True):
            want = sp.embed(m["modality"], [store.content(i)])[0]
            got = store.vectors([i])[0]
            # Same space, not bit-identical: the encoders' fp32 numerics changed after the
            # fixture was written (d901f27, one frozen-weights copy): max |diff| 3e-3 there,
            # cosine >= 0.99997. A stored vector must stay that close to today's embedding.
            assert float(np.dot(got, want)) > 0.9999, (i, float(np.dot(got, want)))
            assert store.search(got[None], k=1)[0][0].id == i
        new = store.add(np.eye(space.dim, dtype=np.float32)[:1], [Item("text", content="new")])
    with open_store(old_store, space) as store:  # the write went through and persists
        assert store.count() == 7 and int(new[0]) in store.ids().tolist()


def test_service_opens_old_store(old_store: Path) -> None:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    state = ServiceState.open(Settings(store=old_store, ui=False))
    try:
        with TestClient(create_app(state=state)) as c:
            assert c.get("/v1/stats").json()["items"] == 6
            r = c.post("/v1/search", json={"queries": [{"text": "a red square"}], "k": 3})
            assert r.status_code == 200, r.text
            top = r.json()["results"][0]
            assert top["text"] == "a red square" and top["score"] > 0.999
    finally:
        state.close()
