"""The Gradio UI, mounted at ``/ui`` on the API's server."""

from __future__ import annotations

from .mount import mount_ui

__all__ = ["mount_ui"]
