"""The FastAPI service (``/v1``) and the Gradio search UI (``/ui``): ``create_app(settings)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .main import create_app
    from .settings import Settings

__all__ = ["create_app", "Settings"]


def __getattr__(name: str) -> Any:
    """Import FastAPI and Gradio only when the service is used."""
    if name == "create_app":
        from .main import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
