"""Settings, ``spaner serve`` flags, store bootstrap, and the catch-all 500 handler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spaner.app.settings import Settings

from spaner.cli.main import build_parser
from spaner.errors import ConfigError


def test_settings_from_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANER_PORT", "9999")
    monkeypatch.setenv("SPANER_API_KEY", "k")
    monkeypatch.setenv("SPANER_MAX_UPLOAD_MB", "2")
    s = Settings()
    assert s.host == "127.0.0.1" and s.port == 9999 and s.api_key.get_secret_value() == "k"
    assert s.max_upload_bytes == 2 * 1024 * 1024 and s.limits().max_bytes == s.max_upload_bytes


def test_serve_flags_override_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from spaner.cli.serve import settings_from_args

    monkeypatch.setenv("SPANER_PORT", "9999")
    args = build_parser().parse_args(
        [
            "serve",
            "--store",
            str(tmp_path),
            "--profile",
            "tiny",
            "--port",
            "18765",
            "--api-key",
            "x",
            "--max-upload-mb",
            "3",
            "--no-ui",
        ]
    )
    s = settings_from_args(args)
    assert (s.store, s.profile, s.port, s.max_upload_mb, s.ui) == (
        tmp_path,
        "tiny",
        18765,
        3.0,
        False,
    )
    with pytest.raises(ConfigError, match="port"):
        settings_from_args(build_parser().parse_args(["serve", "--port", "99999"]))


def test_store_is_created_then_reopened_with_the_same_space(tmp_path: Path) -> None:
    from spaner.app.state import ServiceState

    s = Settings(store=tmp_path / "store", profile="tiny", ui=False)
    first = ServiceState.open(s)
    mid = first.peek().model_id
    assert (s.store / "checkpoint" / "model.safetensors").is_file()
    binding = json.loads((s.store / "spaner.json").read_text())  # what `spaner ingest/search` read
    assert binding["checkpoint"] == "checkpoint" and binding["space_id"].startswith(mid)
    first.close()
    again = ServiceState.open(s)
    assert again.peek().model_id == mid
    again.close()
    from spaner.pipeline import Spaner

    Spaner.from_profile("tiny", modalities=["text", "image"]).save(tmp_path / "other")
    with pytest.raises(ConfigError, match="not of --checkpoint"):
        ServiceState.open(Settings(store=s.store, checkpoint=tmp_path / "other", ui=False))


def test_a_non_store_directory_is_refused(tmp_path: Path) -> None:
    from spaner.app.state import ServiceState

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a SPANER store"):
        ServiceState.open(Settings(store=tmp_path / "junk", profile="tiny", ui=False))


def test_bugs_are_500_with_an_error_id(service_state, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.routers import stats

    app = create_app(state=service_state)
    monkeypatch.setattr(stats, "StatsOut", None)  # a bug in the route
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/v1/stats")
    assert (
        r.status_code == 500
        and r.json()["error"] == "internal_error"
        and "id " in r.json()["detail"]
    )
