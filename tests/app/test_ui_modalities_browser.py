"""The UI shows every modality (issue 15), in a real browser (Debian's chromium via Playwright).

A small digits collection, a few-shot model trained on it (the ``digits`` profile, with the
random conv net for audio) and a live ``spaner serve`` on its store: typing a
digit shows handwritten, spoken and written items of that digit side by side; uploading a
spoken digit shows pictures of it. Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_ui_browser import ARGS, CHROMIUM, _free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is not installed (apt-get install chromium)",
    ),
]

#: the ``digits`` profile, with the random conv net for audio in place of Whisper (cheaper here)
ENCODERS = {"audio": "randconv-audio"}


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A reduced digits build, a 5-shot model trained on it, and a store of every item."""
    import torch

    from spaner.datasets.digits import DigitsConfig, build_digits
    from spaner.ingest import ingest
    from spaner.model.config import TrainConfig
    from spaner.pipeline import Spaner

    root = tmp_path_factory.mktemp("ui-digits")
    data = root / "digits"
    build_digits(
        data, DigitsConfig(seed=0, voices=8, renditions=2, per_digit_images=30), progress=False
    )
    manifest = data / "manifest.jsonl"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sp = Spaner.from_profile("digits", encoders=ENCODERS)
        cfg = TrainConfig(shots=5, seed=0)  # the default objective and schedule
        sp.fit(sp.prepare(manifest, cfg), cfg, progress=False)
        sp.save(root / "checkpoint")
        report = ingest([manifest], root / "store", checkpoint=root / "checkpoint")
    finally:
        torch.set_num_threads(threads)
    assert report.added > 0 and not report.bad
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    return {"store": root / "store", "rows": rows, "root": root}


@pytest.fixture(scope="module")
def server(digits_store: dict) -> Iterator[str]:
    root: Path = digits_store["root"]
    port = _free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spaner.cli.main",
            "-q",
            "serve",
            "--store",
            str(digits_store["store"]),
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
                raise AssertionError(f"server exited: {(root / 'server.log').read_text()}")
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


@pytest.fixture()
def page(server: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1300})
            pg.goto(f"{server}/ui/", timeout=60_000)
            pg.locator("#query textarea").wait_for(timeout=60_000)
            yield pg
        finally:
            browser.close()


def _wait_for_results(pg) -> None:
    pg.locator("#search-status").get_by_text("results from").wait_for(timeout=120_000)


def _gallery_captions(pg) -> list[str]:
    pg.locator("#results-images img").first.wait_for(timeout=60_000)
    return [c.strip() for c in pg.locator("#results-images .caption-label").all_text_contents()]


def test_typing_a_digit_shows_images_sounds_and_texts_of_it(page, tmp_path: Path) -> None:
    assert page.locator("#transcript").is_visible()  # the place for a spoken query's transcript
    page.locator("#query textarea").fill("seven")
    page.locator("#search-button").click()
    _wait_for_results(page)
    # each list's best result is of the concept: a handwritten, a spoken and a written seven
    captions = _gallery_captions(page)
    assert captions and captions[0].endswith("seven"), captions
    players = page.locator("#results-sounds audio")
    assert players.count() >= 1
    sounds = page.locator("#results-sounds li").all_text_contents()
    assert sounds[0].strip().endswith("seven"), sounds
    first_text = page.locator("#results-text-list tbody tr").first.text_content() or ""
    assert "seven" in first_text, first_text
    # the players play stored audio: their source is served as audio
    src = players.first.get_attribute("src") or ""
    assert src.startswith("../v1/items/")
    resp = page.request.get(page.url.rstrip("/") + "/" + src)
    assert resp.status == 200 and resp.headers["content-type"].startswith("audio/")
    page.screenshot(path=str(tmp_path / "ui-seven.png"), full_page=True)
    assert (tmp_path / "ui-seven.png").stat().st_size > 20_000


def test_an_uploaded_spoken_digit_shows_pictures_of_it(
    page, digits_store: dict, tmp_path: Path
) -> None:
    root = digits_store["store"].parent / "digits"
    clip = next(
        r for r in digits_store["rows"] if "audio" in r and r["split"] == "test" and r["concept"]
    )
    path = Path(clip["audio"]) if Path(clip["audio"]).is_absolute() else root / clip["audio"]
    page.locator("#query-audio input[type=file]").set_input_files(str(path))
    page.locator("#query-audio audio").first.wait_for(state="attached", timeout=60_000)
    page.locator("#search-button").click()
    _wait_for_results(page)
    captions = _gallery_captions(page)
    assert any(c.endswith(clip["concept"]) for c in captions), (clip["concept"], captions)
    page.screenshot(path=str(tmp_path / "ui-spoken.png"), full_page=True)


def test_the_map_draws_when_its_tab_opens_and_switches_to_tsne(page, tmp_path: Path) -> None:
    page.get_by_role("tab", name="Map").click()
    status = page.locator("#map-status")
    status.get_by_text("PCA of").wait_for(timeout=120_000)  # no button pressed
    plot = page.locator("#map-plot")
    plot.locator("canvas, svg").first.wait_for(timeout=60_000)
    page.get_by_label("t-SNE").check()
    status.get_by_text("t-SNE of").wait_for(timeout=180_000)
    plot.locator("canvas, svg").first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "ui-map.png"), full_page=True)
