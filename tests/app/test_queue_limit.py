"""Overload (issue 16, item 5): past ``max_queue`` requests in progress the server answers 503
with Retry-After at once, and serves again when the queue drains.

Deterministic: the requests are held by the service's own store lock (taken for writing by
the test), and the test waits on the middleware's in-progress count, not on a clock. The
health probe answers ``busy`` at once while the lock is held (it used to wait for it).
"""

from __future__ import annotations

import threading

import httpx
import pytest


@pytest.mark.anyio
async def test_queue_limit_503_retry_after(service_state) -> None:
    from spaner.app.main import create_app
    from spaner.app.queue_limit import QueueLimit

    settings = service_state.settings.model_copy(update={"max_queue": 3})
    app = create_app(settings=settings, state=service_state)
    limit = app.middleware_stack = app.build_middleware_stack()
    while not isinstance(limit, QueueLimit):
        limit = limit.app
    assert limit.max_queue == 3
    transport = httpx.ASGITransport(app=app)
    body = {"queries": [{"text": "a red square"}], "k": 1}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
        import anyio

        held = threading.Event()
        release = threading.Event()
        released: list[bool] = []

        def hold() -> None:
            with service_state.writing():
                held.set()
                released.append(release.wait(60))  # False: nothing released it (a hang)

        t = threading.Thread(target=hold)
        t.start()
        held.wait(30)
        results: list[httpx.Response] = []

        async def one() -> None:
            results.append(await c.post("/v1/search", json=body))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
            for _ in range(2000):  # until the three are in progress (blocked on the lock)
                if limit.in_progress == 3:
                    break
                await anyio.sleep(0.01)
            assert limit.in_progress == 3
            extra = [await c.post("/v1/search", json=body) for _ in range(5)]
            health = await c.get("/v1/health")  # never refused, never waits for the lock
            release.set()
        t.join(30)
    assert [r.status_code for r in extra] == [503] * 5
    assert all(r.headers["retry-after"] == "1" for r in extra)
    assert extra[0].json()["error"] == "overloaded" and "3 requests" in extra[0].json()["detail"]
    assert health.status_code == 200 and health.json()["busy"] is True
    assert released == [True], "the health probe waited for the write lock"
    assert sorted(r.status_code for r in results) == [200, 200, 200]
    assert limit.in_progress == 0 and limit.refused == 5
