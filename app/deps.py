"""Dependencies and their ``Annotated`` aliases: the service state and the write guard."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from .settings import Settings
from .state import ServiceState

__all__ = ["get_state", "StateDep", "SettingsDep", "require_write_key", "WriteAccess"]

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="required for every write when the server runs with --api-key / SPANER_API_KEY",
)


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_write_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Writes need the configured key in ``X-API-Key`` (no key configured: open)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    if not expected:
        return
    if not key:
        raise HTTPException(
            401, "this server requires an API key for writes: send it in the X-API-Key header"
        )
    if not secrets.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "the X-API-Key header does not match the server's API key")


WriteAccess = Depends(require_write_key)
