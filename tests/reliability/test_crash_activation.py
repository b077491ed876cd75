"""SIGKILL the server during a fit job and a model activation (issue 16, item 1): reduced run.

``benchmarks/activation_kills.py`` kills a real ``spaner serve`` at chosen progress events
(``SPANER_TEST_KILL_AT``) and checks after each restart that the server starts, the jobs
answer, the active space is exactly the old or the new one (every stored vector is the
active checkpoint's embedding of its content), no acknowledged item is lost and nothing is
left over. The full run (22 points) is in RELIABILITY.md; this test kills at three named
points: mid-training, between the two renames of the swap (the old store must come back)
and just after the new store was renamed in (the switch must be finished).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "activation_kills.py"
POINTS = ["fit:training: step 2", "activate:swap:parked", "activate:swap:moved-in"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_during_fit_and_activation(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("activation_kills", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    sys.modules["activation_kills"] = harness
    spec.loader.exec_module(harness)
    tally = harness.run(tmp_path, 0, lambda msg: print(msg), points=list(POINTS))
    assert not tally.failures, tally.failures
    assert tally.kills == 3 and tally.kills_by_phase == {"fit": 1, "swap": 2}
    assert tally.active_old == 2 and tally.active_new == 1  # parked: old back; moved-in: new
    assert tally.jobs_checked == 5  # fit (killed: no activation) + 2 x (fit, activation)
    assert tally.leftovers_max == 0 and tally.vectors_checked > 0
