"""API errors: every error a user can cause becomes a 4xx with a message that says what to do.

Body shape: ``{"error": "<code>", "detail": "<message>"}``. Only real bugs reach the
catch-all handler, which logs the traceback and answers 500 with an error id to quote.
"""

from __future__ import annotations

import logging
import math
import uuid

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from spaner.index import SpaceMismatchError, StoreError, UnknownIdError
from starlette.exceptions import HTTPException as StarletteHTTPException

from spaner.errors import ConfigError, DiskFullError, InputError, SpanerError, is_disk_full

__all__ = [
    "ApiError",
    "NotFound",
    "Conflict",
    "UnsupportedMedia",
    "TooLarge",
    "InsufficientStorage",
    "install_handlers",
]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status, a short code and an actionable message."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class UnsupportedMedia(ApiError):
    status, code = 415, "unsupported_media_type"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class Unprocessable(ApiError):
    status, code = 422, "invalid_input"


class InsufficientStorage(ApiError):
    status, code = 507, "insufficient_storage"


def _disk_full_detail(exc: BaseException) -> str:
    if isinstance(exc, DiskFullError):
        return str(exc)
    name = getattr(exc, "filename", None)
    return (
        f"no space left on device{f' writing {name}' if name else ''} ({exc}); nothing of this "
        "request was stored: free space and retry"
    )


def _input_error_status(exc: InputError) -> tuple[int, str]:
    problem = exc.problem
    if "limit" in problem:
        return 413, "too_large"
    if "not a recognised" in problem:
        return 415, "unsupported_media_type"
    return 422, "invalid_input"


def _body(code: str, detail: object) -> dict[str, object]:
    return {"error": code, "detail": detail}


def error_response(exc: Exception) -> JSONResponse | None:
    """The response for an error a user caused, or None for a bug."""
    if isinstance(exc, ApiError):
        return JSONResponse(_body(exc.code, exc.detail), status_code=exc.status)
    if is_disk_full(exc):
        return JSONResponse(_body("insufficient_storage", _disk_full_detail(exc)), status_code=507)
    if isinstance(exc, InputError):
        status, code = _input_error_status(exc)
        return JSONResponse(_body(code, str(exc)), status_code=status)
    if isinstance(exc, UnknownIdError):
        return JSONResponse(_body("not_found", str(exc)), status_code=404)
    if isinstance(exc, SpaceMismatchError):
        return JSONResponse(_body("conflict", str(exc)), status_code=409)
    if isinstance(exc, (ConfigError, StoreError, SpanerError)):
        return JSONResponse(_body("invalid_input", str(exc)), status_code=422)
    return None


def install_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def known(request: Request, exc: Exception) -> JSONResponse:
        resp = error_response(exc)
        assert resp is not None
        return resp

    for cls in (ApiError, SpanerError, StoreError):
        app.add_exception_handler(cls, known)

    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        return JSONResponse(
            _body(codes.get(exc.status_code, "http_error"), exc.detail),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(
            exc.errors(),
            custom_encoder={
                bytes: lambda b: f"<{len(b)} bytes>",
                float: lambda f: f if math.isfinite(f) else str(f),  # echoed NaN/Infinity
            },
        )
        parts = []
        for e in errors:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
            parts.append(f"{where}: {e.get('msg')}")
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": "; ".join(parts) or "invalid request",
                "errors": errors,
            },
            status_code=422,
        )

    async def bug(request: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):  # not a bug: a full disk (a raw OSError or SQLite's error)
            log.warning("%s %s: %s", request.method, request.url.path, exc)
            return JSONResponse(
                _body("insufficient_storage", _disk_full_detail(exc)), status_code=507
            )
        error_id = uuid.uuid4().hex[:12]
        log.exception("internal error %s on %s %s", error_id, request.method, request.url.path)
        return JSONResponse(
            _body(
                "internal_error",
                f"internal server error (id {error_id}); this is a bug, please report it",
            ),
            status_code=500,
        )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(Exception, bug)
