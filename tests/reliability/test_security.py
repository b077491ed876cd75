"""Security properties: path traversal, the Gradio file route, the API key on every write,
loopback by default, pickle-free checkpoints, bombs and oversized bodies refused early."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET_MARK = "root:"  # first bytes of /etc/passwd


def _png(size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


# -- path traversal -------------------------------------------------------------------------
def test_manifest_paths_cannot_escape(tmp_path: Path) -> None:
    from spaner.ingest.sources import Candidate, Skip, discover

    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "ok.png").write_bytes(_png(9))
    lines = [
        {"id": "ok", "image": "images/ok.png"},
        {"id": "up", "image": "../outside.png"},
        {"id": "deep", "image": "images/../../outside.png"},
        {"id": "abs", "image": str(outside)},
        {"id": "etc", "image": "/etc/passwd"},
    ]
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    found = list(discover([manifest]))
    taken = [Path(c.path).resolve() for c in found if isinstance(c, Candidate) and c.path]
    assert taken == [(root / "images" / "ok.png").resolve()]
    assert sum(isinstance(s, Skip) for s in found) == 4


def test_ingest_does_not_follow_symlinks_out_of_its_paths(tmp_path: Path) -> None:
    from spaner.ingest.sources import Candidate, discover

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "s.png").write_bytes(_png())
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.png").write_bytes(_png(9))
    os.symlink(secret / "s.png", root / "link.png")
    os.symlink(secret, root / "linkdir")
    os.symlink("/etc/passwd", root / "passwd.txt")
    taken = {Path(c.path).resolve() for c in discover([root]) if isinstance(c, Candidate)}
    assert taken == {(root / "a.png").resolve()}


TRAVERSALS = [
    "/v1/items/../../etc/passwd",
    "/v1/items/..%2f..%2fetc%2fpasswd/content",
    "/v1/items/%2e%2e/%2e%2e/etc/passwd",
    "/v1/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/v1/items/..%252f..%252fetc%252fpasswd/content",
    "/v1/items/%2Fetc%2Fpasswd/content",
    "/v1/items/0/content/../../../../etc/passwd",
    "/v1/items/0%00/content",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_content_route_traversal(rel_client, url: str) -> None:
    r = rel_client.get(url)
    assert r.status_code in (404, 405, 422), (url, r.status_code)
    assert SECRET_MARK not in r.text


def test_gradio_file_route_serves_only_the_collection(rel_state, monkeypatch) -> None:
    pytest.importorskip("gradio")
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app

    monkeypatch.setattr(rel_state.settings, "ui", True)
    store = rel_state.store_dir.resolve()
    targets = [
        "/etc/passwd",
        str(store / "spaner.json"),
        str(store / "metadata.sqlite"),
        str(store / "checkpoint" / "config.json"),
        str(rel_state.content_dir / ".." / "store.json"),
    ]
    with TestClient(create_app(state=rel_state), raise_server_exceptions=False) as c:
        for t in targets:
            for form in (
                t,
                t.replace("/", "%2F"),
                t.replace("/", "%252F"),
                "..%2F" * 8 + t.lstrip("/"),
            ):
                for prefix in ("/ui/gradio_api/file=", "/ui/file=", "/ui/gradio_api/file/"):
                    r = c.get(prefix + form)
                    assert r.status_code >= 400, (prefix + form, r.status_code)
                    assert SECRET_MARK not in r.text and '"space_id"' not in r.text


# -- API key and bind address ----------------------------------------------------------------
def _write_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every POST/PUT/PATCH/DELETE route, through included routers."""
    out = []
    for route in app.routes:
        contexts = (
            route.effective_candidates() if hasattr(route, "effective_candidates") else [route]
        )
        for ctx in contexts:
            for m in getattr(ctx, "methods", None) or ():
                if m in {"POST", "PUT", "PATCH", "DELETE"}:
                    out.append((m, ctx.path))
    return sorted(set(out))


def test_api_key_enforced_on_every_write(rel_state, monkeypatch) -> None:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from spaner.app.main import create_app

    monkeypatch.setattr(rel_state.settings, "api_key", SecretStr("k3y"))
    app = create_app(state=rel_state)
    routes = _write_routes(app)
    schema_writes = {
        (m.upper(), p)
        for p, ops in app.openapi()["paths"].items()
        for m in ops
        if m.upper() in {"POST", "PUT", "PATCH", "DELETE"}
    }
    assert schema_writes <= set(routes) and len(routes) >= 5
    reads = {("POST", "/v1/search"), ("POST", "/v1/embed")}  # queries: no state change
    count_before = rel_state.peek().store.count()
    with TestClient(app, raise_server_exceptions=False) as c:
        for method, path in routes:
            if (method, path) in reads:
                continue
            url = re.sub(r"\{[^}]+\}", "0", path)
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
                r = c.request(method, url, json={"items": [{"text": "x"}]}, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code)
    assert rel_state.peek().store.count() == count_before


def test_default_bind_is_loopback(monkeypatch) -> None:
    from spaner.app.settings import Settings

    monkeypatch.delenv("SPANER_HOST", raising=False)
    assert Settings().host == "127.0.0.1"


# -- checkpoints: safetensors + JSON only ------------------------------------------------------
class _Boom:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_ignores_planted_pickles(rel_state, tmp_path: Path) -> None:
    from spaner.model.checkpoint import load_checkpoint

    ckpt = tmp_path / "ckpt"
    shutil.copytree(rel_state.store_dir / "checkpoint", ckpt)
    marker = tmp_path / "UNPICKLED"
    for name in ("pytorch_model.bin", "model.bin", "model.pt", "model.pkl", "optimizer.pt"):
        (ckpt / name).write_bytes(pickle.dumps(_Boom(str(marker))))
    model, _ = load_checkpoint(ckpt)
    assert model is not None
    assert not marker.exists()
    (ckpt / "model.safetensors").unlink()  # only a pickle left: refused, never unpickled
    with pytest.raises(Exception, match="safetensors|checkpoint"):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_no_unsafe_deserialisation_in_source() -> None:
    bad = []
    for pkg in ("spaner", "encoders", "index", "app"):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text(encoding="utf-8")
            for m in re.finditer(r"torch\.load\((.*)", text):
                if "weights_only=True" not in m.group(1):
                    bad.append(f"{f}: {m.group(0)}")
            if re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(|allow_pickle=True", text):
                bad.append(f"{f}: pickle/joblib load")
    assert not bad, bad


# -- bombs and oversized bodies ------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _giant_png_header(w: int = 100_000, h: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("route", ["/v1/embed", "/v1/search", "/v1/items"])
def test_decompression_bomb_refused_fast(rel_client, route: str) -> None:
    t0 = time.perf_counter()
    r = rel_client.post(
        route, files=[("files" if route != "/v1/embed" else "file", ("b.png", _giant_png_header()))]
    )
    assert r.status_code in (413, 415, 422), (r.status_code, r.text)
    assert time.perf_counter() - t0 < 5.0


def test_oversized_body_refused_with_and_without_length(rel_client, rel_state) -> None:
    limit = rel_state.settings.max_upload_bytes
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (limit + 1024)
    r = rel_client.post("/v1/items", files=[("files", ("x.png", big))])
    assert r.status_code == 413
    sent = 0

    def stream():
        nonlocal sent
        chunk = b"a" * 65536
        while sent < 4 * limit:  # bounded: the server must stop us long before this
            sent += len(chunk)
            yield chunk

    r = rel_client.post(
        "/v1/items", content=stream(), headers={"content-type": "multipart/form-data; boundary=zz"}
    )
    assert r.status_code == 413, r.text
    r = rel_client.post(
        "/v1/search",
        content=b"{" + b" " * (limit + 10) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
