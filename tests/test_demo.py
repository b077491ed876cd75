"""The offline demo end to end on its digits collection: digits -> few-shot training -> store -> API.

A reduced digits build (fewer voices, images and epochs than ``make demo``) keeps this fast,
but every step is the real one: eSpeak speech, scikit-learn digits, the ``offline`` profile,
``prepare_demo`` and the FastAPI app. It checks what the issue promises a user of the demo:
typing "seven" finds handwritten sevens and spoken "seven", a spoken digit finds its images,
and a second run reuses everything.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from spaner.datasets.digits import DigitsConfig
    from spaner.demo import DemoConfig, prepare_demo

    work = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(
        workdir=work,
        collection="digits",
        digits=DigitsConfig(seed=0, voices=8, renditions=2, per_digit_images=30),
    )
    info = prepare_demo(cfg, progress=False)
    return {"cfg": cfg, "info": info, "work": work}


@pytest.fixture(scope="module")
def client(demo: dict):
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings

    settings = Settings(store=Path(demo["info"]["store"]), profile="digits", ui=False)
    with TestClient(create_app(settings)) as c:
        yield c


def _manifest(demo: dict) -> list[dict]:
    lines = (demo["work"] / "digits" / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_demo_indexes_every_item(demo: dict) -> None:
    rows = _manifest(demo)
    files = [r for r in rows if "text" not in r]
    texts = {r["text"] for r in rows if "text" in r}  # the same sentence is stored once
    assert len(files) > 0 and len(texts) > 0
    assert demo["info"]["items"] == len(files) + len(texts)
    assert set(demo["info"]["test_r1"]) >= {"text->image", "audio->text", "image->audio"}


def test_typing_seven_finds_handwritten_and_spoken_sevens(client) -> None:
    for modality in ("image", "audio"):
        r = client.post(
            "/v1/search", json={"queries": [{"text": "seven"}], "k": 5, "modalities": [modality]}
        )
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert {h["modality"] for h in hits} == {modality}
        concepts = Counter(h["concept"] for h in hits)
        assert concepts["seven"] >= 3, (modality, concepts)
    # the audio hits are playable: their content is served as audio
    audio_id = hits[0]["id"]
    r = client.get(f"/v1/items/{audio_id}/content")
    assert r.status_code == 200 and r.headers["content-type"].startswith("audio/")


def test_spoken_digit_from_a_held_out_voice_finds_its_images(demo: dict, client) -> None:
    rows = _manifest(demo)
    queries = {}
    for row in rows:  # one held-out-voice clip per digit
        if "audio" in row and row["split"] == "test":
            queries.setdefault(row["concept"], row["audio"])
    assert len(queries) == 10
    correct = 0
    for concept, rel in sorted(queries.items()):
        wav = (demo["work"] / "digits" / rel).read_bytes()
        r = client.post(
            "/v1/search",
            data={"request": json.dumps({"k": 1, "modalities": ["image"]})},
            files=[("files", ("q.wav", wav, "audio/wav"))],
        )
        assert r.status_code == 200, r.text
        correct += r.json()["results"][0]["concept"] == concept
    assert correct >= 6, (
        f"{correct}/10 spoken digits found an image of their digit (chance is 1/10)"
    )


def test_second_run_reuses_everything(demo: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import spaner.ingest
    from spaner.demo import prepare_demo

    def no_ingest(*args, **kwargs):
        raise AssertionError("a second run must not read the collection again")

    monkeypatch.setattr(spaner.ingest, "ingest", no_ingest)
    again = prepare_demo(demo["cfg"], progress=False)
    assert again["added"] == 0 and again["items"] == demo["info"]["items"]
    assert again["timings"]["train"] < 5.0  # no retraining: only the state check


def test_a_first_run_warms_the_servers_bytecode_in_a_child(tmp_path: Path, monkeypatch) -> None:
    import sys

    from spaner import demo as demo_module

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the user said: no bytecode
    assert demo_module._warm_server_bytecode(tmp_path) is None
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    child = demo_module._warm_server_bytecode(tmp_path)
    assert child is not None
    assert child.wait() == 0  # the server's modules import in a fresh, lower-priority interpreter
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "model.safetensors").write_bytes(b"")
    assert demo_module._warm_server_bytecode(tmp_path) is None  # a later run: nothing to warm
