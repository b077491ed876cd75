"""A real browser (Debian's chromium via Playwright) drives the Gradio UI of a live server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live_server(tmp_path: Path):
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spaner.cli.main",
            "-q",
            "serve",
            "--profile",
            "tiny",
            "--store",
            str(tmp_path / "store"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # bounded: up to 120 s
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {(tmp_path / 'server.log').read_text()}")
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("server did not come up in 120 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_ui_search_shows_results(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    r = httpx.post(
        f"{live_server}/v1/items",
        json={
            "items": [
                {"text": "a dog barking in the park", "concept": "dog"},
                {"text": "a cat on a mat", "concept": "cat"},
            ]
        },
    )
    assert r.status_code == 201
    # Gradio's file route serves nothing outside the collection (and its own cache)
    for path in ("/etc/passwd", str(Path(__file__).resolve())):
        leak = httpx.get(f"{live_server}/ui/gradio_api/file={path}")
        assert leak.status_code in (403, 404), (path, leak.status_code)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{live_server}/ui/", timeout=60_000)
            box = page.locator("#query textarea")
            box.wait_for(timeout=60_000)
            box.fill("a dog barking")
            page.locator("#search-button").click()
            page.get_by_text("2 results from 2 items").wait_for(timeout=60_000)
            table = page.locator("#results").text_content() or ""
            assert "a dog barking in the park" in table and "a cat on a mat" in table
            shot = tmp_path / "ui-search.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
