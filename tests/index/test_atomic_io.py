"""spaner.index.atomic_io: the one helper for file writes and folder moves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from spaner.index.atomic_io import (
    TMP_PREFIX,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    move_into_place,
    swap_into_place,
)


def test_file_writes_replace_whole_and_leave_no_temp(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "a.json"
    atomic_write_json(f, {"b": 1, "a": 2})
    assert f.read_text() == json.dumps({"a": 2, "b": 1}, indent=2) + "\n"
    atomic_write_text(f, "héllo")
    assert f.read_text(encoding="utf-8") == "héllo"
    atomic_write_with(f, lambda tmp: Path(tmp).write_bytes(b"cache"), fsync=False)
    assert f.read_bytes() == b"cache"

    def boom(tmp: str) -> None:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write_with(f, boom)
    assert f.read_bytes() == b"cache"  # the old file, whole
    assert not list(f.parent.glob(f"{TMP_PREFIX}*"))


def test_folder_moves(tmp_path: Path) -> None:
    new = tmp_path / "build"
    new.mkdir()
    (new / "x").write_text("1")
    move_into_place(new, tmp_path / "live")
    assert (tmp_path / "live" / "x").read_text() == "1" and not new.exists()
    new.mkdir()
    (new / "x").write_text("2")
    swap_into_place(new, tmp_path / "live")
    assert (tmp_path / "live" / "x").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # the old one is gone
