"""The UI layout: Search, Add items, Few-shot, Map. Callbacks live in :mod:`.actions`."""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from ..state import ServiceState
from . import actions
from .map import PROJECTIONS, embedding_map

__all__ = ["build_blocks", "RESULT_CSS"]


RESULT_CSS = """
.sound-list { list-style: none; padding: 0; margin: 0; }
.sound-list li { margin: 0 0 .6em 0; }
.sound-list audio { width: 100%; }
"""


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
                    label="…or by sound",
                    type="filepath",
                    sources=["upload", "microphone"],
                    elem_id="query-audio",
                )
        with gr.Column(scale=1):
            targets = gr.CheckboxGroup(modalities, value=modalities, label="Find")
            k = gr.Slider(1, 50, value=8, step=1, label="Results per modality")
            speech = gr.Radio(
                ["auto", "audio", "transcript", "both"],
                value="auto",
                label="A spoken query searches by",
                info="its sound, Whisper's transcript of it, or both (auto: the transcript when it hears speech)",
            )
            bias = gr.Checkbox(
                value=True,
                label="Match spoken words to the collection's",
                info="a word of the collection Whisper finds nearly as likely replaces what it heard",
                elem_id="speech-bias",
            )
            hybrid = gr.Checkbox(
                value=True,
                label="Also match words (hybrid)",
                info="the collection's texts and spoken transcripts that hold the query's words rank higher; a stored text typed exactly comes first",
                elem_id="hybrid",
            )
            go = gr.Button("Search", variant="primary", elem_id="search-button")
    # what Whisper heard in a spoken query (spaner.search.spoken)
    transcript = gr.Textbox(
        label="Transcript of the spoken query",
        placeholder="(a spoken query's transcript appears here)",
        interactive=False,
        elem_id="transcript",
        lines=1,
    )
    status = gr.Markdown(elem_id="search-status")
    with gr.Row(equal_height=False):
        with gr.Column(visible="image" in modalities, elem_id="results-images") as col_images:
            gr.Markdown("### Images")
            gallery = gr.Gallery(label="Images", columns=3, height=420, show_label=False)
        with gr.Column(visible="audio" in modalities, elem_id="results-audio") as col_audio:
            gr.Markdown("### Sounds")
            sounds = gr.HTML(actions.sounds_html([]), elem_id="results-sounds")
        with gr.Column(visible="text" in modalities, elem_id="results-texts") as col_texts:
            gr.Markdown("### Texts")
            texts = gr.Dataframe(
                headers=actions.TEXT_LIST_COLUMNS,
                show_label=False,
                interactive=False,
                wrap=True,
                elem_id="results-text-list",
            )
    table = gr.Dataframe(
        headers=actions.TEXT_COLUMNS,
        label="All modalities in one ranking",
        elem_id="results",
        interactive=False,
    )

    def do(
        text: str,
        image: str | None,
        audio: str | None,
        targets: list[str],
        k: int,
        speech_mode: str,
        speech_bias: bool = True,
        use_hybrid: bool = True,
    ) -> list[Any]:
        view = actions.run_search(
            state,
            text,
            image,
            audio,
            targets,
            k,
            speech_mode,
            speech_bias=bool(speech_bias),
            hybrid=bool(use_hybrid),
        )
        shown = set(view.searched)
        return [
            view.transcript,
            view.status,
            view.gallery,
            actions.sounds_html(view.sounds),
            view.texts,
            view.mixed,
            gr.update(visible="image" in shown),
            gr.update(visible="audio" in shown),
            gr.update(visible="text" in shown),
        ]

    outs = [transcript, status, gallery, sounds, texts, table, col_images, col_audio, col_texts]
    go.click(do, [text, image, audio, targets, k, speech, bias, hybrid], outs)
    text.submit(do, [text, image, audio, targets, k, speech, bias, hybrid], outs)


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


def _map_tab(state: ServiceState, tab: gr.Tab) -> None:
    gr.Markdown(
        "A 2-D projection of the stored vectors (hover a point for its label): when the space "
        "is aligned, modalities mix and concepts cluster. t-SNE shows clusters better than PCA."
    )
    with gr.Row():
        projection = gr.Radio(list(PROJECTIONS), value="PCA", label="Projection")
        color = gr.Radio(["modality", "concept"], value="modality", label="Colour by")
        draw = gr.Button("Redraw")
    status = gr.Markdown(elem_id="map-status")
    plot = gr.ScatterPlot(
        x="x",
        y="y",
        color="modality",
        tooltip=["label", "concept", "modality", "id"],
        height=480,
        elem_id="map-plot",
    )

    def do(method: str, color_by: str) -> list[Any]:
        frame = embedding_map(state, method)
        line = f"{method} of {len(frame)} stored items, coloured by {color_by}"
        return [gr.update(value=frame, color=color_by), line]

    outs = [plot, status]
    tab.select(do, [projection, color], outs)  # draws as soon as the tab opens
    draw.click(do, [projection, color], outs)
    projection.change(do, [projection, color], outs)
    color.change(do, [projection, color], outs)


def build_blocks(state: ServiceState) -> gr.Blocks:
    with gr.Blocks(title="SPANER search") as demo:
        gr.Markdown("## SPANER: search text, images and sounds in one space")
        with gr.Tab("Search"):
            _search_tab(state)
        with gr.Tab("Add items"):
            _add_tab(state)
        with gr.Tab("Few-shot"):
            _fewshot_tab(state)
        with gr.Tab("Map", elem_id="map-tab") as map_tab:
            _map_tab(state, map_tab)
    return demo
