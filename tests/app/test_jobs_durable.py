"""Jobs survive a restart and can be cancelled (issue 16, item 2).

The service records every job in ``<parent>/.<store>.jobs.sqlite``. A restart is a new
``ServiceState`` on the same store (the real-process version, with SIGKILL, is
tests/reliability/test_crash_activation.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import png_bytes

COLOURS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (20, 40, 220)}


def _open(store: Path):
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    return ServiceState.open(Settings(store=store, profile="tiny", ui=False, fit_epochs=3))


@pytest.fixture()
def service(tmp_path: Path) -> Iterator:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app

    state = _open(tmp_path / "store")
    with TestClient(create_app(state=state)) as c:
        yield c, state
    state.close()


def _wait(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def _support(client) -> list[dict]:
    examples = []
    for name, rgb in COLOURS.items():
        r = client.post(
            "/v1/items",
            files=[("files", (f"{name}.png", png_bytes(rgb), "image/png"))],
            data={"concept": name},
        )
        examples.append({"item_id": r.json()["items"][0]["id"], "concept": name})
        examples.append({"text": f"a {name} colour", "concept": name})
    return examples


def _fit(client, epochs: int = 2, seed: int = 0) -> dict:
    r = client.post(
        "/v1/fewshot/fit", json={"examples": _support(client), "epochs": epochs, "seed": seed}
    )
    assert r.status_code == 202, r.text
    return _wait(client, r.json()["id"])


def test_finished_job_answers_after_restart(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app

    store = tmp_path / "store"
    state = _open(store)
    with TestClient(create_app(state=state)) as c:
        job = _fit(c)
        assert job["status"] == "succeeded", job
    state.close()
    state = _open(store)  # a restart
    try:
        with TestClient(create_app(state=state)) as c:
            again = c.get(f"/v1/jobs/{job['id']}").json()
            assert again["status"] == "succeeded"
            assert again["result"] == job["result"] and again["metrics"] == job["metrics"]
            assert job["id"] in [j["id"] for j in c.get("/v1/jobs").json()]
            r = c.get("/v1/jobs/0123456789abcdef")
            assert r.status_code == 404 and "never gave it out" in r.json()["detail"]
    finally:
        state.close()


def test_running_job_of_a_dead_process_is_interrupted(tmp_path: Path) -> None:
    """Rows a killed process left ``running``/``queued`` come back ``interrupted`` with the
    reason; an interrupted activation names the model still active."""
    from fastapi.testclient import TestClient
    from spaner.app.job_store import JobStore, jobs_db_path
    from spaner.app.main import create_app

    store = tmp_path / "store"
    _open(store).close()
    db = JobStore(jobs_db_path(store))
    base = {"progress": 0.4, "metrics": {}, "result": {}, "error": None, "created": time.time()}
    db.put(
        {
            **base,
            "id": "a" * 16,
            "kind": "fit",
            "status": "running",
            "message": "training: step 3 of at most 9",
            "params": {},
        }
    )
    db.put(
        {
            **base,
            "id": "b" * 16,
            "kind": "activate",
            "status": "running",
            "message": "re-embedding: 64 of 128 items",
            "params": {"model_id": "ffffffffffff", "from": "x"},
        }
    )
    db.put(
        {
            **base,
            "id": "c" * 16,
            "kind": "fit",
            "status": "queued",
            "message": "queued",
            "params": {},
        }
    )
    db.close()
    state = _open(store)
    try:
        active = state.peek().model_id
        with TestClient(create_app(state=state)) as c:
            fit = c.get(f"/v1/jobs/{'a' * 16}").json()
            assert fit["status"] == "interrupted" and fit["finished"] is not None
            assert "stopped while this job was running (training: step 3" in fit["error"]
            act = c.get(f"/v1/jobs/{'b' * 16}").json()
            assert act["status"] == "interrupted"
            assert f"model {active} (the previous one) is still active" in act["error"]
            queued = c.get(f"/v1/jobs/{'c' * 16}").json()
            assert queued["status"] == "interrupted" and "was queued" in queued["error"]
    finally:
        state.close()


@pytest.mark.slow
def test_cancel_running_fit_and_activation(service, monkeypatch: pytest.MonkeyPatch) -> None:
    from spaner.app import activation

    client, state = service
    old_id = client.get("/v1/health").json()["model_id"]
    fitted = _fit(client)
    assert fitted["status"] == "succeeded", fitted
    new_id = fitted["result"]["model_id"]
    client.post("/v1/items", json={"items": [{"text": f"filler {i}"} for i in range(150)]})
    n_items = client.get("/v1/stats").json()["items"]

    # cancel a running activation from inside its first re-embedding batch: decided by the
    # job's own progress, not by timing
    real = activation._copy_items
    asked: list[dict] = []

    def copy_and_cancel(old, sp, new, ids):
        if not asked:
            jid = state.jobs.running("activate")[0].id
            asked.append(client.delete(f"/v1/jobs/{jid}").json())
        return real(old, sp, new, ids)

    monkeypatch.setattr(activation, "_copy_items", copy_and_cancel)
    r = client.post(f"/v1/models/{new_id}/activate")
    job = _wait(client, r.json()["id"])
    assert asked and asked[0]["cancel_requested"] is True and asked[0]["status"] == "running"
    assert job["status"] == "cancelled" and job["error"] == "cancelled on request"
    health = client.get("/v1/health").json()
    assert health["model_id"] == old_id and health["items"] == n_items  # old space active
    hits = client.post("/v1/search", json={"queries": [{"text": "filler 3"}], "k": 1}).json()
    assert hits["model_id"] == old_id and hits["results"][0]["text"] == "filler 3"
    names = [p.name for p in state.store_dir.parent.iterdir()]
    assert not [n for n in names if ".next-" in n or ".old-" in n or ".trash-" in n], names
    r = client.delete(f"/v1/jobs/{job['id']}")  # finished: nothing to cancel
    assert r.status_code == 409 and "already finished" in r.json()["detail"]
    assert client.post("/v1/jobs/0123456789abcdef/cancel").status_code == 404

    # a fit cancelled at its first training step saves no model
    monkeypatch.setattr(activation, "_copy_items", real)
    models_before = {m["id"] for m in client.get("/v1/models").json()["models"]}
    from spaner.app import jobs

    real_update = jobs.Job.update

    def update(self, progress=None, message=None):
        if self.kind == "fit" and message and message.startswith("training: step 1 "):
            state.jobs.cancel(self.id)
        return real_update(self, progress, message)

    monkeypatch.setattr(jobs.Job, "update", update)
    r = client.post("/v1/fewshot/fit", json={"examples": _support(client), "epochs": 50, "seed": 7})
    job = _wait(client, r.json()["id"])
    assert job["status"] == "cancelled", job
    assert {m["id"] for m in client.get("/v1/models").json()["models"]} == models_before
    assert not list(state.models_dir.glob(".tmp-*"))
    # the activation of the fitted model still works after both cancels
    monkeypatch.setattr(jobs.Job, "update", real_update)
    act = _wait(client, client.post(f"/v1/models/{new_id}/activate").json()["id"])
    assert act["status"] == "succeeded", act
    assert client.get("/v1/health").json()["model_id"] == new_id


def test_cancel_queued_job(service) -> None:
    """A job waiting behind another is cancelled at once and never runs."""
    import threading

    client, state = service
    gate = threading.Event()
    blocker = state.jobs.submit("block", lambda job: (gate.wait(60), {})[1])
    ran: list[int] = []
    queued = state.jobs.submit("other", lambda job: ran.append(1) or {})
    r = client.post(f"/v1/jobs/{queued.id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    gate.set()
    assert state.jobs.wait(blocker.id).status == "succeeded"
    after = state.jobs.submit("after", lambda job: {})  # one worker, in order: once this
    assert state.jobs.wait(after.id).status == "succeeded"  # ran, the queued one was passed
    assert state.jobs.get(queued.id).status == "cancelled" and not ran
