"""The request-size limit (before the body is read whole), API keys, content sniffing."""

from __future__ import annotations

import asyncio

import pytest
from conftest import png_bytes, wav_bytes
from spaner.app.uploads import SNIFFED_TYPES, BodySizeLimit, sniff


def test_declared_length_over_limit_is_413(client) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"0" * (1024 * 1024 + 10)
    r = client.post("/v1/embed", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "MB limit" in r.json()["detail"]


def test_streamed_body_is_cut_off_at_the_limit() -> None:
    """No Content-Length: the middleware counts chunks and stops reading past the limit."""
    reads = 0

    async def app(scope, receive, send):
        while True:
            msg = await receive()
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    sent = []

    async def send(msg):
        sent.append(msg)

    asyncio.run(BodySizeLimit(app, 4500)({"type": "http", "headers": []}, receive, send))
    assert sent[0]["status"] == 413
    assert reads == 5  # stopped right after passing 4500 bytes


def test_streamed_body_under_the_limit_passes() -> None:
    chunks = [
        {"type": "http.request", "body": b"x" * 100, "more_body": True},
        {"type": "http.request", "body": b"x", "more_body": False},
    ]

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})

    sent = []

    async def send(msg):
        sent.append(msg)

    async def receive():
        return chunks.pop(0)

    asyncio.run(
        BodySizeLimit(app, 4500)(
            {"type": "http", "headers": [(b"content-length", b"101")]}, receive, send
        )
    )
    assert sent[0]["status"] == 200


KNOWN = [
    (png_bytes(), "image", "image/png"),
    (b"\xff\xd8\xff\xe0" + b"0" * 20, "image", "image/jpeg"),
    (b"GIF89a" + b"0" * 20, "image", "image/gif"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image", "image/webp"),
    (b"BM" + b"0" * 30, "image", "image/bmp"),
    (b"II*\x00" + b"0" * 20, "image", "image/tiff"),
    (b"MM\x00*" + b"0" * 20, "image", "image/tiff"),
    (wav_bytes(), "audio", "audio/wav"),
    (b"fLaC" + b"0" * 20, "audio", "audio/flac"),
    (b"OggS" + b"0" * 20, "audio", "audio/ogg"),
    (b"ID3" + b"0" * 20, "audio", "audio/mpeg"),
    (b"\xff\xfb\x90\x00" + b"0" * 20, "audio", "audio/mpeg"),
]


@pytest.mark.parametrize(("data", "modality", "mime"), KNOWN)
def test_sniff_known_types(data, modality, mime) -> None:
    s = sniff(data)
    assert s is not None and (s.modality, s.mime) == (modality, mime)


def test_every_type_content_is_served_as_is_in_the_openapi_schema(client) -> None:
    # the content route serves what sniff says: the schema must list every such type
    assert {m for _, _, m in KNOWN} == set(SNIFFED_TYPES)
    op = client.get("/openapi.json").json()["paths"]["/v1/items/{item_id}/content"]["get"]
    documented = set(op["responses"]["200"]["content"])
    assert documented == {*SNIFFED_TYPES, "text/plain", "application/octet-stream"}


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7", b"<html>"]
)
def test_sniff_refuses_other_types(data) -> None:
    assert sniff(data) is None


def test_writes_need_the_api_key_when_configured(keyed_client) -> None:
    c = keyed_client
    body = {"items": [{"text": "keyed item"}]}
    r = c.post("/v1/items", json=body)
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert c.post("/v1/items", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    r = c.post("/v1/items", json=body, headers={"X-API-Key": "s3cret"})
    assert r.status_code == 201
    item_id = r.json()["items"][0]["id"]
    assert c.delete(f"/v1/items/{item_id}").status_code == 401
    assert c.post("/v1/fewshot/fit", json={"examples": []}).status_code == 401
    assert c.post("/v1/models/000000000000/activate").status_code == 401
    # reads stay open
    assert c.post("/v1/search", json={"queries": [{"text": "keyed item"}]}).status_code == 200
    assert c.get(f"/v1/items/{item_id}").status_code == 200
    assert c.delete(f"/v1/items/{item_id}", headers={"X-API-Key": "s3cret"}).status_code == 204
