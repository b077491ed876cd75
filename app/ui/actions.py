"""What the UI's buttons do: the same service functions the REST routes call.

Each function takes the :class:`ServiceState` first and plain values from the components;
errors a user can cause become ``gr.Error`` with the API's message.
"""

from __future__ import annotations

import html
import io
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..activation import start_activation
from ..collection import NewItem, add_items
from ..errors import error_response
from ..fewshot import SupportExample, check_support, start_fit
from ..inputs import classify_upload
from ..model_registry import list_models
from ..retrieval import examples, hit_out, search_examples
from ..state import ServiceState

__all__ = [
    "run_search",
    "SearchView",
    "sounds_html",
    "add_to_collection",
    "support_add",
    "start_fit_job",
    "job_status",
    "activate_model",
    "model_choices",
    "TEXT_COLUMNS",
    "TEXT_LIST_COLUMNS",
]

#: the mixed ranking: by relevance (the calibrated score) when the model has one, else by score
TEXT_COLUMNS = ["relevance", "score", "modality", "concept", "text or source", "id"]
TEXT_LIST_COLUMNS = ["score", "concept", "text"]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the service's user errors into ``gr.Error`` (shown in the page)."""
    import gradio as gr

    try:
        yield
    except gr.Error:
        raise
    except Exception as exc:
        resp = error_response(exc)
        if resp is None:
            raise
        raise gr.Error(str(getattr(exc, "detail", exc))) from None


def _check_key(state: ServiceState, key: str | None) -> None:
    import gradio as gr

    expected = state.settings.api_key.get_secret_value() if state.settings.api_key else None
    if expected and not secrets.compare_digest((key or "").encode(), expected.encode()):
        raise gr.Error("this server needs its API key for changes: enter it in the 'API key' box")


def _read(path: str | None) -> tuple[str, bytes] | None:
    if not path:
        return None
    p = Path(path)
    return p.name, p.read_bytes()


def _decode_image(data: bytes) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


@dataclass
class SearchView:
    """What a search shows: each modality's own best results, and the mixed ranking."""

    gallery: list[tuple[Any, str]] = field(default_factory=list)
    sounds: list[tuple[int, str]] = field(default_factory=list)  # (item id, caption)
    texts: list[list[Any]] = field(default_factory=list)  # rows of TEXT_LIST_COLUMNS
    mixed: list[list[Any]] = field(default_factory=list)  # rows of TEXT_COLUMNS
    status: str = ""
    searched: list[str] = field(default_factory=list)
    transcript: str = ""  # what Whisper heard in a spoken query, when it was transcribed


def _caption(h: dict[str, Any]) -> str:
    return f"{h['score']:.3f} · {h['concept'] or h['source'] or h['id']}"


def _heard_line(h: dict[str, Any]) -> str:
    """“A lark” (heard “Mark!”, matched in the collection; used: transcript)."""
    if not h.get("transcript"):
        return f"(no speech heard: {h['reason']})" if h.get("reason") else "(no speech heard)"
    why = f"used: {h['used']}" + (f", {h['reason']}" if h.get("reason") else "")
    if h.get("vocabulary_match") and h.get("heard") and h["heard"] != h["transcript"]:
        why = f"heard “{h['heard']}”, matched in the collection; {why}"
    return f"“{h['transcript']}” ({why})"


def run_search(
    state: ServiceState,
    text: str | None,
    image: str | None,
    audio: str | None,
    targets: list[str],
    k: int,
    speech: str = "auto",
    speech_bias: bool = True,
    hybrid: bool = True,
) -> SearchView:
    """The top ``k`` of each ticked modality (images, sounds, texts) and the mixed top ``k``;
    a spoken query's transcript (``speech``: see :mod:`spaner.search.spoken`)."""
    view = SearchView()
    with user_errors(), state.reading() as active:
        uploads = [
            classify_upload(active, data, name)
            for name, data in filter(None, (_read(image), _read(audio)))
        ]
        texts = [text.strip()] if text and text.strip() else []
        if not texts and not uploads:
            raise ValueError("type a query, or upload an image or a sound")
        if not targets:
            raise ValueError("tick at least one modality to find")
        result = search_examples(
            active,
            examples(texts, uploads=uploads),
            int(k),
            modalities=targets,
            group_by="modality",
            speech=speech,
            speech_bias=speech_bias,
            hybrid=hybrid,
        )
        view.transcript = "; ".join(_heard_line(h) for h in result.transcripts)
        groups = {
            m: [hit_out(active, h) for h in hits] for m, hits in (result.groups or {}).items()
        }
        view.searched = list(groups)
        for h in groups.get("image", []):
            view.gallery.append((_decode_image(active.store.content(h["id"])), _caption(h)))
        view.sounds = [(h["id"], _caption(h)) for h in groups.get("audio", [])]
        view.texts = [
            [round(h["score"], 4), h["concept"] or "", h["text"] or h["source"] or ""]
            for h in groups.get("text", [])
        ]
        for h in (hit_out(active, x) for x in result.results):
            view.mixed.append(
                [
                    None if h["relevance"] is None else round(h["relevance"], 4),
                    round(h["score"], 4),
                    h["modality"],
                    h["concept"] or "",
                    h["text"] or h["source"] or "",
                    h["id"],
                ]
            )
        found = ", ".join(f"{len(g)} {m}" for m, g in groups.items())
        view.status = (
            f"{len(view.mixed)} results from {active.store.count()} items ({found}; "
            f"model {active.model_id})"
        )
    return view


def sounds_html(sounds: list[tuple[int, str]]) -> str:
    """A list of audio players for stored clips (served by ``GET /v1/items/{id}/content``)."""
    if not sounds:
        return '<p class="no-results">no sounds</p>'
    rows = "".join(
        f'<li><div>{html.escape(caption)}</div><audio controls preload="none" '
        f'src="../v1/items/{int(item_id)}/content"></audio></li>'
        for item_id, caption in sounds
    )
    return f'<ol class="sound-list">{rows}</ol>'


def add_to_collection(
    state: ServiceState,
    files: list[str] | None,
    texts: str | None,
    concept: str | None,
    key: str | None,
) -> str:
    _check_key(state, key)
    with user_errors(), state.reading() as active:
        new = [
            NewItem(text=t.strip(), concept=concept or None)
            for t in (texts or "").splitlines()
            if t.strip()
        ]
        for path in files or []:
            name, data = _read(path)  # type: ignore[misc]
            new.append(
                NewItem(
                    upload=classify_upload(active, data, name), concept=concept or None, source=name
                )
            )
        if not new:
            raise ValueError("nothing to add: choose files or type texts (one per line)")
        ids, dups = add_items(active, new)
    return f"stored {len(ids) - len(dups)} new items" + (
        f"; {len(dups)} were already stored" if dups else ""
    )


def support_add(
    state: ServiceState,
    support: list[dict[str, Any]],
    files: list[str] | None,
    texts: str | None,
    concept: str | None,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Add examples of one concept to the support set (kept in the browser session)."""
    import gradio as gr

    if not concept or not concept.strip():
        raise gr.Error("name the concept these examples show")
    support = list(support or [])
    with user_errors(), state.reading() as active:
        for t in (texts or "").splitlines():
            if t.strip():
                support.append(
                    {
                        "modality": "text",
                        "content": t.strip(),
                        "concept": concept.strip(),
                        "name": t.strip()[:40],
                    }
                )
        for path in files or []:
            name, data = _read(path)  # type: ignore[misc]
            up = classify_upload(active, data, name)
            active.spaner.encoders[up.kind.modality].load(data, name)
            support.append(
                {
                    "modality": up.kind.modality,
                    "content": data,
                    "concept": concept.strip(),
                    "name": name,
                }
            )
    return support, [[s["concept"], s["modality"], s["name"]] for s in support]


def start_fit_job(
    state: ServiceState, support: list[dict[str, Any]], epochs: int, key: str | None
) -> str:
    _check_key(state, key)
    examples = [
        SupportExample(s["modality"], s["content"], s["concept"], s["name"]) for s in support or []
    ]
    with user_errors():
        with state.reading() as active:
            check_support(active, examples)
        job = start_fit(state, examples, int(epochs), 2e-3, 0)
    return job.id


def job_status(state: ServiceState, job_id: str | None) -> tuple[str, dict[str, Any]]:
    """(progress bar HTML, metrics) of a job."""
    job = state.jobs.get(job_id) if job_id else None
    if job is None:
        return "<p>no job yet</p>", {}
    bar = (
        f'<progress value="{job.progress:.3f}" max="1" style="width:100%"></progress>'
        f"<p>{job.kind} {job.id}: {job.status} · {job.progress:.0%} · {job.message}</p>"
    )
    if job.error:
        bar += f"<p><b>error:</b> {job.error}</p>"
    return bar, {"metrics": job.metrics, "result": job.result}


def model_choices(state: ServiceState) -> list[tuple[str, str]]:
    return [
        (
            f"{m['id']}{' (active)' if m['active'] else ''} · {m['info'].get('examples', '-')} examples",
            m["id"],
        )
        for m in list_models(state)
    ]


def activate_model(state: ServiceState, model_id: str | None, key: str | None) -> str:
    import gradio as gr

    _check_key(state, key)
    if not model_id:
        raise gr.Error("choose a model to activate")
    with user_errors():
        return start_activation(state, model_id).id
