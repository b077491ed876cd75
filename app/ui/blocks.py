"""UI layout (placeholder until the full UI lands)."""

from __future__ import annotations

import gradio as gr

from ..state import ServiceState


def build_blocks(state: ServiceState) -> gr.Blocks:
    with gr.Blocks(title="SPANER") as demo:
        gr.Markdown("# SPANER")
    return demo
