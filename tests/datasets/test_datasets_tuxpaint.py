"""``spaner datasets tuxpaint`` on a small stamps tree laid out as Debian's package lays it out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from spaner.datasets.tuxpaint import TuxPaintConfig, build_tuxpaint, concept_of
from spaner.errors import ConfigError

ANIMALS = ["frog", "cat", "dog", "cow", "duck", "horse", "sheep", "owl", "bee", "fox", "pig", "hen"]


def _stamp(folder: Path, name: str, label: str, sound: bool, desc: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    word = name.split("-")[0]
    (folder / f"{name}.txt").write_text(
        f"{label}\nde.utf8=Ein {word}.\nfr.utf8=Un {word}.\nxx.utf8=\n", encoding="utf-8"
    )
    img = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    img.paste((30, 160, 40, 255), (10, 5, 50, 35))
    img.save(folder / f"{name}.png")
    rng = np.random.default_rng(len(name))
    if sound:
        sf.write(folder / f"{name}.ogg", rng.normal(0, 0.1, 8000).astype(np.float32), 16000)
    for lang in desc:
        suffix = "" if lang == "en" else f"_{lang}"
        sf.write(
            folder / f"{name}_desc{suffix}.ogg", rng.normal(0, 0.1, 4000).astype(np.float32), 16000
        )


@pytest.fixture(scope="module")
def stamps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pkg") / "usr" / "share" / "tuxpaint" / "stamps"
    for i, animal in enumerate(ANIMALS):
        _stamp(root / "animals" / "farm", animal, f"A {animal}.", i % 2 == 0, ("en", "fr"))
    _stamp(root / "animals" / "farm", "frog-1", "A frog.", False, ())  # a second frog stamp
    (root / "animals" / "birds").mkdir(parents=True)
    (root / "animals" / "birds" / "swallow.txt").write_text("A swallow.\n")
    (root / "animals" / "birds" / "swallow.svg").write_text("<svg/>")
    (root / "animals" / "birds" / "crow.txt").write_text("A crow.\n")
    (root / "animals" / "birds" / "crow.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    math = root / "symbols" / "math"
    _stamp(math, "7", "Seven.", True, ())
    sf.write(math / "7_de.ogg", np.zeros(4000, np.float32) + 0.01, 16000)
    sf.write(math / "7_en_GB.ogg", np.zeros(4000, np.float32) + 0.01, 16000)
    return root.parents[3]  # the unpacked package's root: usr/share/tuxpaint/stamps inside


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_concepts_drop_articles_and_punctuation() -> None:
    assert concept_of("A frog.") == "frog"
    assert concept_of("An apple!") == "apple"
    assert concept_of("Seven.") == "seven"


def test_build_writes_items_splits_and_reports_skips(stamps: Path, tmp_path: Path) -> None:
    out = tmp_path / "tux"
    result = build_tuxpaint(out, TuxPaintConfig(text_langs=("de",)), source=stamps, progress=False)
    rows = _rows(out / "manifest.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    frogs = [r for r in rows if r["concept"] == "frog"]
    kinds = sorted(r["meta"]["kind"] for r in frogs)
    # two frog photos, one shared English label, the German label, the croak, the spoken description
    assert kinds == ["label", "label", "photo", "photo", "sound", "speech"]
    assert {r["text"] for r in frogs if "text" in r} == {"A frog", "Ein frog"}
    assert [r["meta"]["lang"] for r in frogs if r["meta"]["kind"] == "speech"] == ["en"]
    # photos are flattened onto white JPEGs
    photo = next(r for r in frogs if r["meta"]["kind"] == "photo")
    with Image.open(out / photo["image"]) as img:
        assert img.mode == "RGB" and img.getpixel((0, 0)) == (255, 255, 255)
    # every file the manifest names exists
    for r in rows:
        for key in ("image", "audio"):
            if key in r:
                assert (out / r[key]).is_file()
    # skipped with reasons: the SVG-only swallow, the broken crow photo
    assert result.skipped["vector drawing only (SVG): no photo"] == 1
    assert result.skipped["unreadable photo (UnidentifiedImageError)"] == 1
    # split by concept: a concept's items share one split
    for concept in {r["concept"] for r in rows}:
        assert len({r["split"] for r in rows if r["concept"] == concept}) == 1
    # the seen split: every concept keeps one item of each of its modalities in training
    seen = _rows(out / "manifest-seen.jsonl")
    originals = [r for r in seen if "@" not in r["id"]]
    assert {r["id"] for r in originals} == set(ids)
    for concept in {r["concept"] for r in seen}:
        for key in ("image", "audio", "text"):
            group = [r for r in seen if r["concept"] == concept and key in r]
            assert not group or any(r["split"] == "train" for r in group), (concept, key)
    # a held-out photo or sound has its concept's English label beside it as a text target
    for r in seen:
        if r["split"] != "train" and "text" not in r:
            assert any(
                t["split"] == r["split"] and t["concept"] == r["concept"] and "text" in t
                for t in seen
            ), r["id"]
    copies = [r for r in seen if "@" in r["id"]]
    by_id = {r["id"]: r for r in originals}
    for c in copies:
        label, split = c["id"].rsplit("@", 1)
        assert c["split"] == split != "train" and by_id[label]["text"] == c["text"]
        assert by_id[label]["split"] == "train"
    # spoken digits: English and other languages, descriptions left out
    digits = _rows(out / "spoken-digits.jsonl")
    assert sorted(r["meta"]["lang"] for r in digits) == ["de", "en", "en_GB"]
    assert all(r["concept"] == "seven" for r in digits)
    assert json.loads((out / "dataset.json").read_text())["items"] == len(rows)


def test_build_is_deterministic_and_refuses_to_overwrite(stamps: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    build_tuxpaint(a, source=stamps, progress=False)
    build_tuxpaint(b, source=stamps, progress=False)
    assert (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()
    assert (a / "manifest-seen.jsonl").read_text() == (b / "manifest-seen.jsonl").read_text()
    with pytest.raises(ConfigError, match="--overwrite"):
        build_tuxpaint(a, source=stamps, progress=False)
    with pytest.raises(ConfigError, match="no Tux Paint stamps"):
        build_tuxpaint(tmp_path / "c", source=tmp_path / "a" / "images", progress=False)


def test_cli_builds_from_a_folder(stamps: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "spaner.cli.main", "-q", "datasets", "tuxpaint", "--out", str(out),
         "--from", str(stamps), "--speech-langs", "all", "--text-langs", ""],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1: vector drawing only" in proc.stdout
    rows = _rows(out / "manifest.jsonl")
    assert {r["meta"]["lang"] for r in rows if r["meta"]["kind"] == "speech"} == {"en", "fr"}
    assert all(r["meta"]["lang"] == "en" for r in rows if "text" in r)
    bad = subprocess.run(
        [sys.executable, "-m", "spaner.cli.main", "datasets", "tuxpaint", "--out", str(tmp_path / "x"),
         "--from", str(tmp_path / "missing")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr
