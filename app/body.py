"""Request bodies that are either JSON or multipart (JSON fields + uploaded files).

FastAPI binds one body type per route; the routes that take files *or* JSON read the body
here and document both media types through :func:`openapi_body`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from .errors import Unprocessable, UnsupportedMedia

__all__ = ["ParsedBody", "read_body", "openapi_body", "BODY_MODELS"]

M = TypeVar("M", bound=BaseModel)

#: Schemas referenced only from ``openapi_extra`` (added to the OpenAPI components by main).
BODY_MODELS: list[type[BaseModel]] = []


@dataclass
class ParsedBody:
    model: Any
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (field, filename, data)
    fields: dict[str, list[str]] = field(default_factory=dict)

    def field_values(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    def field(self, name: str) -> str | None:
        vals = self.fields.get(name)
        return vals[-1] if vals else None


def _validate(model: type[M], raw: bytes | str | dict[str, Any], where: str) -> M:
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for e in errors:
            e["loc"] = (where, *e.get("loc", ()))
        raise RequestValidationError(errors) from None


def _check_fields(fields: dict[str, list[str]], allowed: frozenset[str], json_field: str) -> None:
    """Refuse form fields the route does not read (they used to be ignored silently)."""
    stray = sorted(k for k in fields if k not in allowed)
    if not stray:
        return
    takes = ", ".join(repr(f) for f in sorted(allowed - {json_field}))
    raise Unprocessable(
        f"unknown form field{'s' if len(stray) > 1 else ''} {', '.join(map(repr, stray))}: "
        f"options go as JSON in the {json_field!r} part, e.g. "
        f"-F '{json_field}={{\"{stray[0]}\": ...}}'"
        + (f"; the other form fields this route takes are {takes}" if takes else "")
        + " (files go in file parts)"
    )


async def read_body(
    request: Request,
    model: type[M],
    json_field: str = "request",
    max_files: int = 64,
    form_fields: tuple[str, ...] = (),
) -> ParsedBody:
    """Parse a JSON body into ``model``, or a multipart body: its ``json_field`` part (JSON
    text, optional) into ``model``, every file part into ``files``, the non-file parts named
    in ``form_fields`` into ``fields``. Any other non-file part is a 422 that names it."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        body = await request.body()
        if not body.strip():
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body",), "msg": "empty JSON body", "input": None}]
            )
        return ParsedBody(_validate(model, body, "body"))
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=max_files, max_fields=256)
        files: list[tuple[str, str, bytes]] = []
        fields: dict[str, list[str]] = {}
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files.append((key, value.filename or key, await value.read()))
                else:
                    fields.setdefault(key, []).append(str(value))
        finally:
            await form.close()
        _check_fields(fields, frozenset((json_field, *form_fields)), json_field)
        raw = fields.pop(json_field, [None])[-1]
        parsed = _validate(model, raw, json_field) if raw else _validate(model, {}, json_field)
        return ParsedBody(parsed, files, fields)
    raise UnsupportedMedia(
        f"Content-Type {ctype or '(none)'} is not accepted here: send application/json, or "
        "multipart/form-data with file parts"
    )


def openapi_body(
    json_model: type[BaseModel],
    multipart: dict[str, Any],
    description: str,
    *,
    json_extra: dict[str, Any] | None = None,
    multipart_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON-or-multipart request body.

    ``json_extra``: constraints the route adds to ``json_model`` for JSON bodies (e.g. a
    required field); ``multipart_extra``: ``required``/``anyOf`` of the multipart object.
    Multipart bodies take only the parts listed (``additionalProperties: false``), and parts
    whose schema is an object are JSON text."""
    if json_model not in BODY_MODELS:
        BODY_MODELS.append(json_model)
    ref = {"$ref": f"#/components/schemas/{json_model.__name__}"}
    json_schema = {"allOf": [ref], **json_extra} if json_extra else ref
    mp: dict[str, Any] = {
        "type": "object",
        "properties": multipart,
        "additionalProperties": False,
        **(multipart_extra or {}),
    }
    encoding = {
        name: {"contentType": "application/json"}
        for name, prop in multipart.items()
        if "$ref" in prop or prop.get("type") == "object"
    }
    form: dict[str, Any] = {"schema": mp}
    if encoding:
        form["encoding"] = encoding
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": json_schema}, "multipart/form-data": form},
        }
    }


def file_part(description: str, many: bool = False) -> dict[str, Any]:
    one = {"type": "string", "format": "binary", "description": description}
    return {"type": "array", "items": one, "description": description} if many else one


def json_part(description: str, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """A part holding JSON text: an object of ``model`` (or any JSON object)."""
    if model is not None:
        if model not in BODY_MODELS:
            BODY_MODELS.append(model)
        return {"$ref": f"#/components/schemas/{model.__name__}", "description": description}
    return {"type": "object", "description": description}
