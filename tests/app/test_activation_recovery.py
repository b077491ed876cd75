"""recover_activation: what a killed activation leaves beside the store is finished or undone.

The real-process version (SIGKILL at each step) is benchmarks/activation_kills.py and
tests/reliability/test_crash_activation.py; these cases build the leftovers by hand.
"""

from __future__ import annotations

from pathlib import Path

from spaner.app.activation import recover_activation


def _store(path: Path, tag: str) -> Path:
    path.mkdir(parents=True)
    (path / "store.json").write_text(tag)
    (path / "checkpoint").mkdir()
    return path


def test_killed_between_the_renames_puts_the_old_store_back(tmp_path: Path) -> None:
    live = tmp_path / "store"
    old = _store(tmp_path / ".store.old-j1", "old")
    (old / "models" / "aaaaaaaaaaaa").mkdir(parents=True)
    _store(tmp_path / ".store.next-j1", "new")
    (tmp_path / "..store.next-j1.lock").write_text("{}")
    notes = recover_activation(live)
    assert (live / "store.json").read_text() == "old"
    assert (live / "models" / "aaaaaaaaaaaa").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert any("put the previous store back" in n for n in notes)


def test_killed_after_the_commit_keeps_the_new_store_and_its_models(tmp_path: Path) -> None:
    live = _store(tmp_path / "store", "new")
    (live / "models" / "bbbbbbbbbbbb").mkdir(parents=True)  # the previous model, copied in
    old = _store(tmp_path / ".store.old-j2", "old")
    (old / "models" / "cccccccccccc").mkdir(parents=True)  # a trained model still parked
    (old / "models" / "bbbbbbbbbbbb").mkdir(parents=True)
    (tmp_path / ".store.trash-0123").mkdir()
    (live / "models" / ".tmp-fit-x").mkdir()
    recover_activation(live)
    assert (live / "store.json").read_text() == "new"
    assert sorted(p.name for p in (live / "models").iterdir()) == ["bbbbbbbbbbbb", "cccccccccccc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_nothing_to_do(tmp_path: Path) -> None:
    live = _store(tmp_path / "store", "s")
    (tmp_path / "other").mkdir()
    (tmp_path / ".store.lock").write_text("{}")  # the live lock is not a leftover
    assert recover_activation(live) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".store.lock", "other", "store"]
