"""Fixtures for the reliability tests: one tiny-profile service (API only) per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def rel_state(tmp_path_factory: pytest.TempPathFactory):
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    settings = Settings(
        store=tmp_path_factory.mktemp("rel") / "store",
        profile="tiny",
        max_upload_mb=1.0,
        max_pixels=200_000,
        max_audio_seconds=5.0,
        ui=False,
        fit_epochs=1,
    )
    state = ServiceState.open(settings)
    yield state
    state.close()


@pytest.fixture(scope="session")
def rel_client(rel_state) -> Iterator:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app

    with TestClient(create_app(state=rel_state), raise_server_exceptions=False) as c:
        r = c.post("/v1/items", json={"items": [{"text": "a red square", "concept": "red"}]})
        assert r.status_code == 201, r.text
        yield c
