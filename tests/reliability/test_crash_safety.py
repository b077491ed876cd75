"""A reduced run of the crash harness: SIGKILL ``spaner ingest`` and ``spaner serve`` mid-write."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_harness.py"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_ingest_and_server_mid_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("crash_harness", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    sys.modules["crash_harness"] = harness
    spec.loader.exec_module(harness)
    code = harness.main(
        [
            "--ingest-kills",
            "1",
            "--server-kills",
            "1",
            "--creation",
            "",
            "--milvus-kills",
            "0",
            "--workdir",
            str(tmp_path),
            "--seed",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "failures 0" in out
