"""SIGKILL during store creation (``spaner serve``, ``spaner ingest``, ``create_store``).

A child process runs the creation flow and kills itself (SIGKILL) just before its k-th
storage call (mkdir, rename/replace, fsync, sqlite3.connect, faiss.write_index under the
store's folder); the same command is then run again, as a restart would, and must give a
usable store: it opens, its space is its checkpoint's, it is empty, and an item added to it
is found. Before the fix a kill after ``store.json`` and before ``checkpoint/`` (serve) or
``spaner.json`` (ingest) left a store that refused to open, and a kill inside the manifest
write left a folder that neither opened nor could be created again.
Full sweep (every call of every flow): ``benchmarks/crash_harness.py --ingest-kills 0
--server-kills 0``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_harness.py"


def _harness():
    spec = importlib.util.spec_from_file_location("crash_harness", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    sys.modules["crash_harness"] = harness
    spec.loader.exec_module(harness)
    return harness


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill_during_store_creation(tmp_path: Path) -> None:
    h = _harness()
    tally = h.Tally()
    lines: list[str] = []
    # create_store alone is cheap: every third call; serve and ingest (a model is built in
    # each child): every fifth call of the second half, where the store itself is written.
    points = h.run_creation(tmp_path / "s", ["store"], tally, lines.append, stride=3)
    points |= h.run_creation(
        tmp_path / "f", ["serve", "ingest"], tally, lines.append, stride=5, start=0.5
    )
    assert tally.failures == [], "\n".join(lines)
    assert all(n >= 8 for n in points.values()), points  # the hooks saw the flows' writes
    assert tally.kills >= 8 and tally.items_checked == tally.kills + tally.completed_before_kill


def test_interrupted_build_folders_are_removed(tmp_path: Path) -> None:
    """A build folder left by a crash is removed by the next creation; the store is whole."""
    from spaner.index import EmbeddingSpace, create_store

    stale = tmp_path / ".store.creating-x1" / "store"
    stale.mkdir(parents=True)
    (stale / "store.json").write_text("{half")
    (tmp_path / "store").mkdir()  # an empty target folder is fine
    with create_store(tmp_path / "store", EmbeddingSpace("h", 4)) as st:
        assert st.count() == 0
    assert not stale.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    with pytest.raises(Exception, match="not empty"):
        create_store(tmp_path / "store", EmbeddingSpace("h", 4))
