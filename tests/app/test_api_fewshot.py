"""POST /v1/fewshot/fit -> GET /v1/jobs/{id} -> GET /v1/models -> POST /v1/models/{id}/activate."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import png_bytes, wav_bytes

COLOURS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (20, 40, 220)}


def _wait(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert 0.0 <= job["progress"] <= 1.0
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _support(client) -> list[dict]:
    examples = []
    for name, rgb in COLOURS.items():
        for shade in range(3):
            img = png_bytes(tuple(max(0, c - 15 * shade) for c in rgb))
            r = client.post(
                "/v1/items",
                files=[("files", (f"{name}{shade}.png", img, "image/png"))],
                data={"concept": name},
            )
            examples.append({"item_id": r.json()["items"][0]["id"], "concept": name})
            examples.append({"text": f"a {name} colour, shade {shade}", "concept": name})
    return examples


@pytest.mark.slow
def test_fit_activate_switches_space_while_search_keeps_working(fresh_service) -> None:
    client, state = fresh_service
    examples = _support(client)
    client.post(
        "/v1/items",
        json={"items": [{"text": f"filler {i}", "concept": "filler"} for i in range(60)]},
    )
    n_items = client.get("/v1/stats").json()["items"]
    old_id = client.get("/v1/health").json()["model_id"]

    r = client.post("/v1/fewshot/fit", json={"examples": examples, "epochs": 5})
    assert r.status_code == 202 and r.json()["kind"] == "fit"
    job = _wait(client, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0
    new_id = job["result"]["model_id"]
    assert job["result"]["parent"] == old_id and new_id != old_id
    m = job["metrics"]
    assert set(m) >= {"before", "after", "train"} and "retrieval" in m["after"]
    json.dumps(m, allow_nan=False)

    models = client.get("/v1/models").json()
    assert models["active"] == old_id
    assert [x["id"] for x in models["models"]][:1] == [old_id] and new_id in [
        x["id"] for x in models["models"]
    ]
    assert client.get("/v1/health").json()["model_id"] == old_id  # fitted, not active yet

    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set() and len(seen) < 2000:
            r = client.post("/v1/search", json={"queries": [{"text": "a red colour"}], "k": 3})
            seen.append((r.status_code, r.json().get("model_id", "")))

    t = threading.Thread(target=searcher)
    t.start()
    try:
        r = client.post(f"/v1/models/{new_id}/activate")
        assert r.status_code == 202
        act = _wait(client, r.json()["id"])
    finally:
        stop.set()
        t.join(30)
    assert act["status"] == "succeeded", act["error"]
    assert act["result"]["items"] == n_items and act["result"]["previous"] == old_id
    assert seen and all(code == 200 for code, _ in seen)
    ids = [mid for _, mid in seen]
    assert set(ids) <= {old_id, new_id}
    assert ids == sorted(ids, key=lambda x: x == new_id)  # old ... old, new ... new: one switch

    health = client.get("/v1/health").json()
    assert health["model_id"] == new_id and health["items"] == n_items
    r = client.post("/v1/search", json={"queries": [{"text": "a red colour"}], "k": 3})
    assert r.json()["model_id"] == new_id and r.json()["results"]
    models = client.get("/v1/models").json()
    assert models["active"] == new_id and old_id in [
        x["id"] for x in models["models"]
    ]  # can go back
    # ids and content survived the re-embedding
    first = examples[0]["item_id"]
    assert client.get(f"/v1/items/{first}/content").headers["content-type"] == "image/png"
    leftovers = [p.name for p in state.store_dir.parent.glob(".store.*")]
    assert not [n for n in leftovers if any(k in n for k in (".next-", ".old-", ".trash-"))]
    # activating the active model is a no-op job
    again = _wait(client, client.post(f"/v1/models/{new_id}/activate").json()["id"])
    assert again["result"]["changed"] is False


def test_fit_with_uploaded_files(fresh_service) -> None:
    client, _ = fresh_service
    files = [("files", (f"{n}.png", png_bytes(rgb), "image/png")) for n, rgb in COLOURS.items()]
    files += [
        ("files", (f"{n}.wav", wav_bytes(300.0 + 200 * i), "audio/wav"))
        for i, n in enumerate(COLOURS)
    ]
    concepts = list(COLOURS) * 2
    r = client.post(
        "/v1/fewshot/fit",
        files=files,
        data={"concept": concepts, "request": json.dumps({"epochs": 2})},
    )
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["id"])
    assert job["status"] == "succeeded", job["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            {"examples": [{"text": "a", "concept": "x"}, {"text": "b", "concept": "y"}]},
            422,
            "two modalities",
        ),
        ({"examples": [{"text": "a", "concept": "x"}]}, 422, "two modalities"),
        ({"examples": [{"concept": "x"}]}, 422, "exactly one"),
        ({"examples": [{"text": "a", "concept": ""}]}, 422, "concept"),
        ({"examples": [{"item_id": 99999, "concept": "x"}]}, 404, "99999"),
        ({"examples": [], "epochs": 0}, 422, "epochs"),
    ],
)
def test_fit_errors(client, body, status, words) -> None:
    r = client.post("/v1/fewshot/fit", json=body)
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json())


def test_fit_needs_two_concepts_and_matching_concept_fields(client) -> None:
    img = png_bytes()
    r = client.post("/v1/fewshot/fit", files=[("files", ("a.png", img, "image/png"))], data={})
    assert r.status_code == 422 and "concept" in r.json()["detail"]
    r = client.post(
        "/v1/fewshot/fit",
        files=[("files", ("a.png", img, "image/png"))],
        data={"concept": "x", "request": json.dumps({"examples": [{"text": "t", "concept": "x"}]})},
    )
    assert r.status_code == 422 and "two concepts" in r.json()["detail"]
    r = client.post(
        "/v1/fewshot/fit",
        files=[("files", ("a.txt", b"plain", "text/plain"))],
        data={"concept": "x"},
    )
    assert r.status_code == 415


def test_jobs_and_models_errors(client) -> None:
    r = client.get("/v1/jobs/nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert isinstance(client.get("/v1/jobs").json(), list)
    for bad in ("000000000000", "../../etc", "ZZZ"):
        r = client.post(f"/v1/models/{bad}/activate")
        assert r.status_code == 404, bad
    models = client.get("/v1/models").json()
    assert models["models"][0]["active"] and models["models"][0]["id"] == models["active"]
