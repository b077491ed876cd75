"""The UI layout: Search, Add items, Few-shot, Map. Callbacks live in :mod:`.actions`."""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from ..state import ServiceState
from . import actions

__all__ = ["build_blocks"]


def _search_tab(state: ServiceState) -> None:
    modalities = state.peek().spaner.modalities
    with gr.Row():
        with gr.Column(scale=2):
            text = gr.Textbox(label="Search by text", placeholder="a dog barking", elem_id="query")
            with gr.Row():
                image = gr.Image(
                    label="…or by image", type="filepath", sources=["upload"], height=160
                )
                audio = gr.Audio(
                    label="…or by sound", type="filepath", sources=["upload", "microphone"]
                )
        with gr.Column(scale=1):
            targets = gr.CheckboxGroup(modalities, value=modalities, label="Find")
            k = gr.Slider(1, 50, value=10, step=1, label="Results")
            go = gr.Button("Search", variant="primary", elem_id="search-button")
    status = gr.Markdown(elem_id="search-status")
    gallery = gr.Gallery(label="Images", columns=5, height=260)
    players = [
        gr.Audio(label=f"Sound {i + 1}", visible=False, interactive=False)
        for i in range(actions.MAX_AUDIO)
    ]
    table = gr.Dataframe(
        headers=actions.TEXT_COLUMNS, label="All results", elem_id="results", interactive=False
    )

    def do(
        text: str, image: str | None, audio: str | None, targets: list[str], k: int
    ) -> list[Any]:
        gal, rows, sounds, line = actions.run_search(state, text, image, audio, targets, k)
        updates = [gr.update(value=s[0], label=s[1], visible=True) for s in sounds]
        updates += [gr.update(value=None, visible=False)] * (actions.MAX_AUDIO - len(sounds))
        return [line, gal, rows, *updates]

    outs = [status, gallery, table, *players]
    go.click(do, [text, image, audio, targets, k], outs)
    text.submit(do, [text, image, audio, targets, k], outs)


def _add_tab(state: ServiceState) -> None:
    files = gr.File(label="Images or sounds", file_count="multiple", type="filepath")
    texts = gr.Textbox(label="Texts (one item per line)", lines=4)
    concept = gr.Textbox(label="Concept (optional)")
    key = gr.Textbox(label="API key", type="password", visible=state.settings.api_key is not None)
    add = gr.Button("Add to the collection", variant="primary")
    out = gr.Markdown()
    add.click(partial(actions.add_to_collection, state), [files, texts, concept, key], out)


def _fewshot_tab(state: ServiceState) -> None:
    gr.Markdown(
        "Upload a handful of examples per concept (in two or more modalities), train, then activate."
    )
    support = gr.State([])
    job_id = gr.State(None)
    with gr.Row():
        concept = gr.Textbox(label="Concept")
        files = gr.File(label="Examples (images, sounds)", file_count="multiple", type="filepath")
        texts = gr.Textbox(label="Text examples (one per line)", lines=3)
    add = gr.Button("Add these examples")
    table = gr.Dataframe(
        headers=["concept", "modality", "example"], label="Support set", interactive=False
    )
    add.click(
        partial(actions.support_add, state), [support, files, texts, concept], [support, table]
    )
    with gr.Row():
        epochs = gr.Slider(1, 300, value=state.settings.fit_epochs, step=1, label="Epochs")
        key = gr.Textbox(
            label="API key", type="password", visible=state.settings.api_key is not None
        )
    fit = gr.Button("Start training", variant="primary")
    progress = gr.HTML("<p>no job yet</p>")
    metrics = gr.JSON(label="Job metrics")
    fit.click(partial(actions.start_fit_job, state), [support, epochs, key], job_id)
    timer = gr.Timer(1.0)
    timer.tick(partial(actions.job_status, state), job_id, [progress, metrics])
    with gr.Row():
        model = gr.Dropdown(choices=actions.model_choices(state), label="Model")
        refresh = gr.Button("Refresh models")
        activate = gr.Button("Activate", variant="stop")
    refresh.click(lambda: gr.update(choices=actions.model_choices(state)), None, model)
    activate.click(partial(actions.activate_model, state), [model, key], job_id)


def _map_tab(state: ServiceState) -> None:
    gr.Markdown(
        "A 2-D PCA projection of the stored vectors: when the space is aligned, "
        "modalities mix and concepts cluster."
    )
    color = gr.Radio(["modality", "concept"], value="modality", label="Colour by")
    draw = gr.Button("Draw map")
    plot = gr.ScatterPlot(
        x="x", y="y", color="modality", tooltip=["modality", "concept", "id"], height=420
    )

    def do(color_by: str) -> Any:
        return gr.update(value=actions.embedding_map(state, color_by), color=color_by)

    draw.click(do, color, plot)
    color.change(do, color, plot)


def build_blocks(state: ServiceState) -> gr.Blocks:
    with gr.Blocks(title="SPANER search") as demo:
        gr.Markdown("## SPANER: search text, images and sounds in one space")
        with gr.Tab("Search"):
            _search_tab(state)
        with gr.Tab("Add items"):
            _add_tab(state)
        with gr.Tab("Few-shot"):
            _fewshot_tab(state)
        with gr.Tab("Map"):
            _map_tab(state)
    return demo
