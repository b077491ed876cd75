"""Mount the UI with file access limited to the collection's content folder."""

from __future__ import annotations

from fastapi import FastAPI

from ..state import ServiceState

__all__ = ["mount_ui"]


def mount_ui(app: FastAPI, state: ServiceState) -> FastAPI:
    import gradio as gr

    from .blocks import RESULT_CSS, build_blocks

    blocks = build_blocks(state)
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/ui",
        allowed_paths=[str(state.content_dir)],
        max_file_size=state.settings.max_upload_bytes,
        footer_links=["api"],
        ssr_mode=False,
        mcp_server=False,
        css=RESULT_CSS,
    )
