"""Fixtures for the service tests: one tiny-profile service per session, media helpers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest


def png_bytes(
    color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (24, 24)
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(freq: float = 440.0, seconds: float = 0.5, rate: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="session")
def service_settings(tmp_path_factory: pytest.TempPathFactory):
    from spaner.app.settings import Settings

    return Settings(
        store=tmp_path_factory.mktemp("svc") / "store",
        profile="tiny",
        max_upload_mb=1.0,
        max_pixels=200_000,
        max_audio_seconds=5.0,
        ui=False,
        fit_epochs=3,
    )


@pytest.fixture(scope="session")
def service_state(service_settings):
    from spaner.app.state import ServiceState

    state = ServiceState.open(service_settings)
    yield state
    state.close()


@pytest.fixture(scope="session")
def client(service_state) -> Iterator:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app

    with TestClient(create_app(state=service_state)) as c:
        yield c


@pytest.fixture()
def keyed_client(service_state, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """The same service with an API key configured."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from spaner.app.main import create_app

    monkeypatch.setattr(service_state.settings, "api_key", SecretStr("s3cret"))
    with TestClient(create_app(state=service_state)) as c:
        yield c


@pytest.fixture()
def fresh_service(tmp_path: Path) -> Iterator:
    """A private tiny service for tests that change the model (fit, activate)."""
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    state = ServiceState.open(
        Settings(store=tmp_path / "store", profile="tiny", ui=False, fit_epochs=3)
    )
    with TestClient(create_app(state=state)) as c:
        yield c, state
    state.close()
