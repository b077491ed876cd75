"""The sound-packages collection: the archive readers on hand-made archives, and the builder on
packages laid out as Debian unpacks them (no download)."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spaner.datasets.game_archives import read_opensfx_cat, read_qt_rcc
from spaner.datasets.sound_packages import (
    RECORDINGS,
    Recording,
    build_sound_packages,
    load_recordings,
)
from spaner.errors import ConfigError


def _wav(seconds: float = 0.25, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
    sf.write(buf, noise, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _rcc(files: dict[str, bytes], compress: bool = False) -> bytes:
    """A version-1 Qt resource file: root -> folder ``a`` -> the files (flat names)."""
    names = b""

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    data = b""
    nodes = [struct.pack(">IHII", 0, 2, 1, 1), struct.pack(">IHII", name("a"), 2, len(files), 2)]
    for fname, blob in files.items():
        payload = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
        nodes.append(struct.pack(">IHHHI", name(fname), int(compress), 0, 0, len(data)))
        data += struct.pack(">I", len(payload)) + payload
    tree = b"".join(nodes)
    head = 20
    return (
        b"qres"
        + struct.pack(">IIII", 1, head, head + len(tree), head + len(tree) + len(data))
        + tree
        + data
        + names
    )


def _cat(sounds: list[tuple[str, bytes]]) -> bytes:
    table = 8 * len(sounds)
    body, rows = b"", []
    for title, wav in sounds:
        name = title.encode("latin-1") + b"\0"
        rows.append(struct.pack("<II", table + len(body), len(wav)))
        body += bytes([len(name)]) + name + wav
    return b"".join(rows) + body


@pytest.mark.parametrize("compress", [False, True])
def test_read_qt_rcc(tmp_path: Path, compress: bool) -> None:
    files = {"dog.ogg": b"OggS-dog", "cow.ogg": b"OggS-cow" * 10, "notes.txt": b"x"}
    (tmp_path / "a.rcc").write_bytes(_rcc(files, compress))
    got = read_qt_rcc(tmp_path / "a.rcc")
    assert got == {f"/a/{k}": v for k, v in files.items()}
    assert set(read_qt_rcc(tmp_path / "a.rcc", (".ogg",))) == {"/a/dog.ogg", "/a/cow.ogg"}


def test_read_qt_rcc_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.rcc").write_bytes(b"RIFF0000")
    with pytest.raises(ValueError, match="qres"):
        read_qt_rcc(tmp_path / "x.rcc")


def test_read_opensfx_cat(tmp_path: Path) -> None:
    sounds = [('"Cow". By someone. License: CC0.', _wav(seed=1)), ('"Horse".', _wav(0.5, 2))]
    (tmp_path / "s.cat").write_bytes(_cat(sounds))
    got = read_opensfx_cat(tmp_path / "s.cat")
    assert got == sounds
    assert sf.read(io.BytesIO(got[1][1]))[0].shape == (8000,)


def test_tables_are_consistent() -> None:
    ids = [(r.package, r.member) for r in RECORDINGS]
    assert len(ids) == len(set(ids))
    assert all(r.concept == r.concept.strip().lower() and r.concept for r in RECORDINGS)


def test_build_from_unpacked_packages(tmp_path: Path) -> None:
    root = tmp_path / "unpacked"
    rcc = root / "game" / "res.rcc"
    rcc.parent.mkdir(parents=True)
    rcc.write_bytes(_rcc({"dog.ogg": b"OggS-a-dog", "cow.ogg": b"OggS-a-cow"}))
    (root / "sfx").mkdir()
    (root / "sfx" / "s.cat").write_bytes(_cat([("Cow", _wav(seed=3)), ("Cow again", _wav(seed=4))]))
    (root / "icons").mkdir()
    (root / "icons" / "bell.wav").write_bytes(_wav(seed=5))
    recs = [
        Recording("game", "res.rcc!/a/dog.ogg", "dog"),
        Recording("game", "res.rcc!/a/cow.ogg", "cow"),
        Recording("sfx", "s.cat!0", "cow", "one original"),
        Recording("sfx", "s.cat!1", "cow", "one original"),
        Recording("icons", "bell.wav", "bell"),
        Recording("icons", "missing.wav", "bell"),
    ]
    assert len(load_recordings(root, recs)) == 5
    info = build_sound_packages(tmp_path / "out", recordings=recs, unpacked=root)
    assert info["recordings"] == 5 and info["missing"] == 1 and info["classes"] == 3
    rows = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    audio = {r["id"]: r for r in rows if "audio" in r}
    assert set(audio) == {"game.dog", "game.cow", "sfx.sfx00", "sfx.sfx01", "icons.bell"}
    assert audio["sfx.sfx00"]["meta"]["group"] == audio["sfx.sfx01"]["meta"]["group"]
    assert audio["game.dog"]["meta"]["group"] != audio["game.cow"]["meta"]["group"]
    assert (tmp_path / "out" / audio["game.dog"]["audio"]).read_bytes() == b"OggS-a-dog"
    assert sf.info(str(tmp_path / "out" / audio["sfx.sfx01"]["audio"])).frames == 4000
    texts = sorted(r["text"] for r in rows if "text" in r)
    assert texts == ["bell", "cow", "dog"]
    with pytest.raises(ConfigError, match="not empty"):
        build_sound_packages(tmp_path / "out", recordings=recs, unpacked=root)
