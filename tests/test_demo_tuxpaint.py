"""The demo on the Tux Paint collection path, with the real offline encoders (EfficientNet-Lite0,
Whisper tiny.en, MiniLM) on a small generated stamps tree laid out like Debian's package, and its
fallback to the digits when the package cannot be had."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SHAPES = {"frog": (40, 160, 40), "tomato": (220, 30, 30), "banana": (240, 220, 40)}


def _speech(text: str) -> np.ndarray:
    from spaner.datasets.espeak import synthesize_isolated

    samples, _ = synthesize_isolated(text, voice="en", out_rate=16000)
    return samples.astype(np.float32) / 32768.0


def _tree(root: Path) -> Path:
    stamps = root / "usr" / "share" / "tuxpaint" / "stamps" / "things"
    stamps.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n, (name, colour) in enumerate(SHAPES.items()):
        for copy in range(3):
            stem = name if copy == 0 else f"{name}-{copy}"
            (stamps / f"{stem}.txt").write_text(f"A {name}.\nde.utf8=Ein {name}.\n")
            img = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
            draw = ImageDraw.Draw(img)
            box = (10 + 3 * copy, 10, 70 - 3 * copy, 70)
            (draw.ellipse if n % 2 else draw.rectangle)(box, fill=(*colour, 255))
            img.save(stamps / f"{stem}.png")
            tone = np.sin(np.arange(12000) * (0.05 + 0.04 * n)) * 0.3
            sf.write(
                stamps / f"{stem}.ogg",
                (tone + rng.normal(0, 0.01, 12000)).astype(np.float32),
                16000,
            )
        sf.write(stamps / f"{name}_desc.ogg", _speech(f"a {name} is here"), 16000)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from spaner.demo import DemoConfig, prepare_demo

    work = tmp_path_factory.mktemp("demo")
    source = _tree(tmp_path_factory.mktemp("pkg"))
    cfg = DemoConfig(
        workdir=work, source=source, train={"epochs": 200, "patience": 200, "audio_augment": 0}
    )
    info = prepare_demo(cfg, progress=False)
    return {"cfg": cfg, "info": info, "work": work}


@pytest.fixture(scope="module")
def client(demo: dict):
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings

    settings = Settings(store=Path(demo["info"]["store"]), profile="offline", ui=False)
    with TestClient(create_app(settings)) as c:
        yield c


def test_demo_serves_the_tuxpaint_collection_with_the_offline_profile(demo: dict) -> None:
    info = demo["info"]
    assert info["collection"] == "tuxpaint" and info["profile"] == "offline"
    rows = [
        json.loads(x)
        for x in (demo["work"] / "tuxpaint" / "manifest.jsonl").read_text().splitlines()
    ]
    texts = {r["text"] for r in rows if "text" in r}
    assert info["items"] == len([r for r in rows if "text" not in r]) + len(texts)


def test_typing_a_word_finds_its_photo_and_its_sound(client) -> None:
    for modality in ("image", "audio"):
        r = client.post(
            "/v1/search", json={"queries": [{"text": "a frog"}], "k": 3, "modalities": [modality]}
        )
        assert r.status_code == 200, r.text
        assert [h["concept"] for h in r.json()["results"]].count("frog") >= 2, r.json()


def test_a_spoken_query_is_transcribed_and_finds_photos(demo: dict, client) -> None:
    buf = io.BytesIO()
    sf.write(buf, _speech("a tomato"), 16000, format="WAV")
    r = client.post(
        "/v1/search",
        data={"request": json.dumps({"k": 3, "modalities": ["image"], "speech": "transcript"})},
        files=[("files", ("q.wav", buf.getvalue(), "audio/wav"))],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["transcripts"][0]["used"] == "transcript"
    assert "tomato" in body["transcripts"][0]["transcript"].lower()
    assert body["results"][0]["concept"] == "tomato"


def test_the_demo_falls_back_to_the_digits_when_the_package_is_missing(tmp_path: Path) -> None:
    from spaner.demo import DemoConfig, _build_collection

    cfg = DemoConfig(workdir=tmp_path, source=tmp_path / "no-such.deb")
    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "manifest.jsonl").write_text("{}\n")  # pretend it is built already
    collection, train, index = _build_collection(cfg, tmp_path, progress=False)
    assert collection == "digits" and cfg.collection == "digits"
    assert train == index == tmp_path / "digits" / "manifest.jsonl"
