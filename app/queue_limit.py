"""Bounded request queue: past ``max_queue`` requests in progress, answer 503 + Retry-After.

Requests that wait for a worker thread or for the store's lock count as in progress, so
under overload the server refuses new work at once instead of letting every request's
latency grow without bound. ``/v1/health`` is never refused (probes must see a live server).
"""

from __future__ import annotations

import json
import logging
import threading

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["QueueLimit"]

log = logging.getLogger(__name__)

_EXEMPT = ("/v1/health",)


class QueueLimit:
    """ASGI middleware: at most ``max_queue`` HTTP requests in progress at once."""

    def __init__(self, app: ASGIApp, max_queue: int, retry_after: int = 1) -> None:
        self.app = app
        self.max_queue = int(max_queue)
        self.retry_after = int(retry_after)
        self.in_progress = 0
        self.refused = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in _EXEMPT:
            await self.app(scope, receive, send)
            return
        with self._lock:
            full = self.in_progress >= self.max_queue
            if full:
                self.refused += 1
            else:
                self.in_progress += 1
        if full:
            await self._refuse(send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.in_progress -= 1

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            {
                "error": "overloaded",
                "detail": f"the server has {self.max_queue} requests in progress (its queue "
                f"limit); retry after {self.retry_after} s",
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
