"""A few-shot fit through the service trains with the active model profile's training defaults."""

from __future__ import annotations

import dataclasses
import time

import pytest
from conftest import png_bytes

from spaner.profiles import PROFILES


def test_fit_job_applies_the_profile_defaults_and_the_request_wins(
    fresh_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = {"image_augment": 1, "lr": 0.5, "min_epochs": 1}  # lr: the request gives its own
    monkeypatch.setitem(PROFILES, "tiny", dataclasses.replace(PROFILES["tiny"], train=train))
    client, _ = fresh_service
    examples = []
    for name, rgb in {"red": (230, 20, 20), "blue": (20, 40, 220)}.items():
        for shade in range(2):
            img = png_bytes(tuple(max(0, c - 20 * shade) for c in rgb))
            r = client.post(
                "/v1/items",
                files=[("files", (f"{name}{shade}.png", img, "image/png"))],
                data={"concept": name},
            )
            examples.append({"item_id": r.json()["items"][0]["id"], "concept": name})
            examples.append({"text": f"a {name} colour, shade {shade}", "concept": name})

    r = client.post("/v1/fewshot/fit", json={"examples": examples, "epochs": 2, "lr": 0.01})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/jobs/{r.json()['id']}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, "the fit job did not finish"
        time.sleep(0.1)
    assert job["status"] == "succeeded", job["error"]

    (model,) = [m for m in client.get("/v1/models").json()["models"] if not m["active"]]
    used = model["info"]["train_config"]
    assert model["profile"] == "tiny"
    assert used["image_augment"] == 1 and used["min_epochs"] == 1  # the profile's defaults
    assert used["epochs"] == 2 and used["lr"] == 0.01 and used["seed"] == 0  # the request's
