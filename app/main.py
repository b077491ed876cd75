"""The app factory: ``create_app(settings) -> FastAPI`` with the API under ``/v1`` and the UI at ``/ui``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse

from spaner import __version__

from .body import BODY_MODELS
from .errors import install_handlers
from .queue_limit import QueueLimit
from .routers import embed, fewshot, health, items, jobs, models, search, stats
from .schemas.common import ValidationErrorOut
from .settings import Settings
from .state import ServiceState
from .uploads import BodySizeLimit

__all__ = ["create_app"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
One embedding space for text, images and audio: embed, store and search across modalities,
and adapt the space few-shot. Writes need the `X-API-Key` header when the server has a key.
Errors are JSON `{"error": code, "detail": message}`: 413 over a limit, 415 not a decodable
file type, 422 invalid input, 404 unknown id, 507 the disk is full (nothing of the request
was stored; retry once space is free), 503 with `Retry-After` when the server has its
maximum of requests in progress.
"""


#: Python's whitespace (``str.isspace``): a text made only of these is refused as empty.
_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK = f"[^{_SPACE}]"
#: text fields of the request models: the schema says what the server checks beyond pydantic
_TEXT_FIELDS = {"EmbedText": ("text",), "QueryIn": ("text",), "TextItemIn": ("text",)}


def _string_branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The ``type: string`` schema of a property (itself, or its branch of an ``anyOf``)."""
    for sub in prop.get("anyOf", []):
        if sub.get("type") == "string":
            return sub
    return prop


def _document_limits(comps: dict[str, Any], settings: Settings, modalities: list[str]) -> None:
    """Put the server's own limits (and its model's modalities, plugins included) into the
    schema, so it describes what is accepted."""
    for model, names in _TEXT_FIELDS.items():
        for name in names:
            prop = _string_branch(comps[model]["properties"][name])
            prop["maxLength"] = settings.max_text_chars
            prop["pattern"] = NON_BLANK
    search = comps["SearchIn"]["properties"]
    search["k"]["maximum"] = settings.max_k
    search["queries"]["maxItems"] = settings.max_queries
    _string_branch(search["modalities"]["anyOf"][0]["items"])["enum"] = list(modalities)


def _openapi(app: FastAPI, settings: Settings, service: ServiceState) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in BODY_MODELS:
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in doc.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps[model.__name__] = doc
    # 422s from request validation have this service's error shape, not FastAPI's default
    comps["HTTPValidationError"] = ValidationErrorOut.model_json_schema()
    comps.pop("ValidationError", None)
    _document_limits(comps, settings, service.peek().spaner.modalities)
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings | None = None, state: ServiceState | None = None) -> FastAPI:
    """Build the service. Opens (or creates) the store unless an open ``state`` is given."""
    settings = settings or (state.settings if state else Settings())
    service = state or ServiceState.open(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if state is None:  # we opened it, we close it
            service.close()

    app = FastAPI(title="SPANER", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    install_handlers(app)
    for module in (health, stats, embed, search, items, fewshot, jobs, models):
        app.include_router(module.router, prefix="/v1")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(QueueLimit, max_queue=settings.max_queue)  # outermost: refuses first
    app.openapi = lambda: _openapi(app, settings, service)  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if settings.ui else "/docs")

    if settings.ui:
        from .ui import mount_ui

        app = mount_ui(app, service)
    return app
