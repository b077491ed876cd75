"""SIGKILL a process writing to a Milvus Lite store (``backend="milvus"``) mid-batch.

The writer adds batches of 16 items and deletes some, printing each call's ids once it has
returned; it is killed as soon as it has acknowledged a seeded-random number of batches (and it
waits for the kill after the next one, so a fast machine cannot finish first); the store is
reopened (SQLite replays what Milvus is missing) and must hold exactly SQLite's ids in Milvus,
every acknowledged item (content intact, found by its own vector) and none of the acknowledged
deletions.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_harness.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_milvus_writer_mid_batch(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("crash_harness", HARNESS)
    h = importlib.util.module_from_spec(spec)
    sys.modules["crash_harness"] = h
    spec.loader.exec_module(h)
    tally = h.Tally()
    log: list[str] = []
    h.run_milvus(tmp_path, 2, random.Random(3), tally, log.append)
    assert tally.failures == [], "\n".join(log + tally.failures)
    assert tally.kills == 2 and tally.completed_before_kill == 0, log
    assert tally.acknowledged > 0 and tally.present == tally.acknowledged
    assert tally.searchable == tally.present
