"""Uploads: a request-size limit enforced while the body streams in, and content sniffing.

:class:`BodySizeLimit` is ASGI middleware: a declared ``Content-Length`` over the limit is
refused before a byte is read, and a chunked body is counted as it arrives and cut off the
moment it passes the limit, so an oversized upload is never held whole in memory or on disk.
:func:`sniff` decides what a file is from its first bytes; the client's declared type and
file name are never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "Sniffed", "sniff", "UPLOAD_TYPES"]


class _TooLarge(HTTPException):
    """Raised from ``receive`` mid-body; FastAPI re-raises HTTPExceptions unchanged."""


def _too_large_detail(limit: int) -> str:
    return (
        f"request body is over the {limit / 1048576:.1f} MB limit; send a smaller file "
        f"(the server's limit is set with --max-upload-mb / SPANER_MAX_UPLOAD_MB)"
    )


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, counting bytes as they stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send, limit)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(413, _too_large_detail(limit))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._reject(send, limit)

    @staticmethod
    async def _reject(send: Send, limit: int) -> None:
        body = json.dumps({"error": "too_large", "detail": _too_large_detail(limit)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Sniffed:
    modality: str  # "image" or "audio"
    mime: str
    ext: str


#: What the service accepts, for messages and docs.
UPLOAD_TYPES = "images (PNG, JPEG, GIF, WebP, BMP, TIFF) or audio (WAV, FLAC, OGG, MP3)"


#: Every MIME type :func:`sniff` can answer (what stored content is served back as, besides
#: text/plain for texts and application/octet-stream for bytes it does not recognise).
SNIFFED_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "audio/wav",
    "audio/flac",
    "audio/ogg",
    "audio/mpeg",
)


def sniff(data: bytes) -> Sniffed | None:
    """The modality and MIME type of ``data`` from its magic bytes, or None if unknown."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "image/png", "png")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "image/jpeg", "jpg")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("image", "image/gif", "gif")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image", "image/webp", "webp")
    if head.startswith(b"BM") and len(data) > 26:
        return Sniffed("image", "image/bmp", "bmp")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Sniffed("image", "image/tiff", "tiff")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed("audio", "audio/wav", "wav")
    if head.startswith(b"fLaC"):
        return Sniffed("audio", "audio/flac", "flac")
    if head.startswith(b"OggS"):
        return Sniffed("audio", "audio/ogg", "ogg")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Sniffed("audio", "audio/mpeg", "mp3")
    return None
