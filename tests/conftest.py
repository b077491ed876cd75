"""Shared fixtures: tiny seeded data sets, an isolated feature cache, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: hubs answer "not cached" at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Ingest transcribes spoken audio with the real Whisper tiny.en by default
# (spaner.ingest.transcripts); the tests of that ask for it, the rest ingest without it.
os.environ.setdefault("SPANER_TRANSCRIBE", "never")


#: request counts of tests/app/test_schemathesis.py, shown at the end of the run
_SCHEMATHESIS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def schemathesis_counts(pytestconfig: pytest.Config) -> dict:
    """Filled by tests/app/test_schemathesis.py; printed in the terminal summary."""
    return pytestconfig.stash.setdefault(_SCHEMATHESIS, {})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, a worker hands its counts to the controller."""
    calls = session.config.stash.get(_SCHEMATHESIS, None)
    if calls and hasattr(session.config, "workeroutput"):
        session.config.workeroutput["schemathesis_calls"] = calls


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # pytest-xdist controller: a worker finished
    calls = getattr(node, "workeroutput", {}).get("schemathesis_calls")
    if calls:
        node.config.stash[_SCHEMATHESIS] = calls


def pytest_terminal_summary(terminalreporter, config) -> None:
    calls = config.stash.get(_SCHEMATHESIS, None)
    if calls and calls.get("requests"):
        terminalreporter.write_line(
            f"schemathesis: {calls['requests']} generated requests, {calls['5xx']} 5xx, "
            f"{calls['401']} writes refused without the key"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "precision(name): run the test with SPANER_PRECISION=name ('fp32' or 'bf16'), whatever the "
        "environment says. Every test that compares numbers pins 'fp32'; the rest run in the "
        "precision the CPU or the user selects (`SPANER_PRECISION=bf16 make test`).",
    )


def _bf16_runs() -> str | None:
    """None where torch can run bf16 matmuls on this CPU, else why not. Native support
    (AVX-512-BF16, AMX: see spaner.encoders.precision.bf16_supported) only makes bf16 fast;
    torch computes it on any CPU, so this skips only where even that fails."""
    import torch

    try:
        x = torch.ones(2, 4, dtype=torch.bfloat16)
        torch.nn.functional.linear(x, x)
    except Exception as exc:  # pragma: no cover - no such CPU build seen yet
        return f"torch cannot run a bf16 matmul on this CPU ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(autouse=True)
def _pinned_precision(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``@pytest.mark.precision("fp32")``: the test's encoders (``precision="auto"``, the
    default; child processes too) run fp32 even under ``SPANER_PRECISION=bf16`` or on a CPU
    where ``auto`` picks bf16. An encoder built with an explicit precision keeps it."""
    marker = request.node.get_closest_marker("precision")
    if marker is None:
        return
    (name,) = marker.args
    if name not in ("fp32", "bf16"):
        raise ValueError(f"precision marker: 'fp32' or 'bf16', got {name!r}")
    if name == "bf16" and (why := _bf16_runs()):
        pytest.skip(why)
    monkeypatch.setenv("SPANER_PRECISION", name)


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANER_CACHE", str(tmp_path_factory.getbasetemp() / "spaner-cache"))


@pytest.fixture(scope="session")
def paired_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 colour concepts, paired text+image lines, 8 per concept (3 test)."""
    from spaner.datasets.synthetic import make_synthetic

    return make_synthetic(
        tmp_path_factory.mktemp("paired"),
        concepts=10,
        per_concept=8,
        paired=True,
        modalities=("text", "image"),
        test_fraction=0.375,
        seed=0,
    )


@pytest.fixture(scope="session")
def trimodal_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 colour concepts, one modality per line (text, image, audio), 8 per concept."""
    from spaner.datasets.synthetic import make_synthetic

    return make_synthetic(
        tmp_path_factory.mktemp("trimodal"),
        concepts=10,
        per_concept=8,
        paired=False,
        test_fraction=0.375,
        seed=1,
    )
