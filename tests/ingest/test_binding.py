"""One store<->model binding for the CLI and the server (spaner.ingest.binding).

A store made by ``spaner ingest`` opens in the server and its items are found there; a store
made by the server opens with ``spaner search``; both write the same layout; a store in the
layout ``spaner ingest`` wrote before (``model/``) still opens on both sides.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TEXTS = {"red.txt": "a red apple", "sea.txt": "the blue sea", "dog.txt": "a dog barking"}
KEYS = {"checkpoint", "space_id", "dim", "profile"}


def _texts(root: Path) -> Path:
    root.mkdir(parents=True)
    for name, text in TEXTS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _cli_store(root: Path) -> Path:
    from spaner.ingest import ingest

    store = root / "cli-store"
    rep = ingest([_texts(root / "texts")], store, profile="tiny")
    assert rep.created and rep.added == len(TEXTS)
    return store


@contextmanager
def _server(store: Path) -> Iterator:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings

    with TestClient(create_app(Settings(store=store, profile="tiny", ui=False))) as c:
        yield c


def _server_store(root: Path) -> Path:
    store = root / "srv-store"
    with _server(store) as c:
        r = c.post("/v1/items", json={"items": [{"text": t} for t in TEXTS.values()]})
        assert r.status_code == 201, r.text
    return store


def _search_server(c, text: str) -> list[dict]:
    r = c.post("/v1/search", json={"queries": [{"text": text}], "k": 3})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def _search_cli(store: Path, text: str, capsys) -> list[dict]:
    from spaner.cli.main import main

    capsys.readouterr()
    rc = main(["search", "--store", str(store), "--text", text, "-k", "3", "--json", "-q"])
    assert rc == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]


def _layout(store: Path) -> dict:
    rec = json.loads((store / "spaner.json").read_text(encoding="utf-8"))
    return {
        "keys": set(rec),
        "checkpoint": rec["checkpoint"],
        "model files": sorted(p.name for p in (store / "checkpoint").iterdir()),
        "model/": (store / "model").exists(),
    }


def test_a_store_made_by_ingest_is_searchable_in_the_server(tmp_path: Path) -> None:
    store = _cli_store(tmp_path)
    space_id = json.loads((store / "spaner.json").read_text())["space_id"]
    with _server(store) as c:
        assert c.get("/v1/stats").json()["items"] == len(TEXTS)
        models = c.get("/v1/models").json()
        active = models["models"][0] if isinstance(models, dict) else models[0]
        assert active["active"] and space_id.startswith(active["id"])
        for text in TEXTS.values():
            top = _search_server(c, text)[0]
            assert top["text"] == text and top["score"] > 0.999


def test_a_store_made_by_the_server_is_searchable_with_the_cli(tmp_path: Path, capsys) -> None:
    from spaner.ingest.binding import open_bound_store

    store = _server_store(tmp_path)
    bound = open_bound_store(store, read_only=True)
    try:
        assert bound.store.count() == len(TEXTS)
        assert bound.checkpoint == store / "checkpoint"
        assert bound.spaner.space_id == bound.store.space.checkpoint_hash
    finally:
        bound.close()
    for text in TEXTS.values():
        top = _search_cli(store, text, capsys)[0]
        assert top["score"] > 0.999
        assert json.loads((store / "spaner.json").read_text())["checkpoint"] == "checkpoint"


def test_cli_and_server_write_the_same_layout(tmp_path: Path) -> None:
    cli, srv = _cli_store(tmp_path), _server_store(tmp_path)
    want = {
        "keys": KEYS,
        "checkpoint": "checkpoint",
        "model files": ["config.json", "model.safetensors"],
        "model/": False,
    }
    assert _layout(cli) == want
    assert _layout(srv) == want
    for store in (cli, srv):
        assert json.loads((store / "spaner.json").read_text())["profile"] == "tiny"
    with _server(cli):  # opening in the server changes nothing of a CLI store's layout
        pass
    assert _layout(cli) == want


def test_ingest_with_a_checkpoint_copies_it_into_the_store(tmp_path: Path) -> None:
    from spaner.ingest import ingest
    from spaner.model.checkpoint import checkpoint_hash
    from spaner.pipeline import Spaner

    ckpt = Spaner.from_profile("tiny", modalities=["text"]).save(tmp_path / "ckpt")
    store = tmp_path / "store"
    ingest([_texts(tmp_path / "texts")], store, checkpoint=ckpt)
    rec = json.loads((store / "spaner.json").read_text())
    assert rec["checkpoint"] == "checkpoint"
    assert checkpoint_hash(store / "checkpoint") == checkpoint_hash(ckpt) == rec["space_id"]
    shutil.rmtree(ckpt)  # the store is self-contained
    rep = ingest([tmp_path / "texts"], store)
    assert rep.skipped_present == len(TEXTS)


@pytest.mark.parametrize("record", ["model", "absolute"])
def test_a_store_in_the_earlier_cli_layout_still_opens(tmp_path: Path, capsys, record: str) -> None:
    """``spaner ingest`` used to save the model as ``model/`` (or record a --checkpoint by
    absolute path): the record says where it is, and both sides follow it."""
    from spaner.ingest.binding import open_bound_store

    store = _cli_store(tmp_path)
    rec = json.loads((store / "spaner.json").read_text())
    if record == "model":
        (store / "checkpoint").rename(store / "model")
        rec["checkpoint"] = "model"
    else:
        (store / "checkpoint").rename(tmp_path / "elsewhere")
        rec["checkpoint"] = str(tmp_path / "elsewhere")
    (store / "spaner.json").write_text(json.dumps(rec))
    bound = open_bound_store(store, read_only=True)
    bound.close()
    assert _search_cli(store, "the blue sea", capsys)[0]["score"] > 0.999
    with _server(store) as c:  # the server copies the model in as checkpoint/
        assert _search_server(c, "the blue sea")[0]["text"] == "the blue sea"
    assert json.loads((store / "spaner.json").read_text())["checkpoint"] == "checkpoint"
    assert (store / "checkpoint" / "config.json").is_file()
    assert _search_cli(store, "a dog barking", capsys)[0]["score"] > 0.999
