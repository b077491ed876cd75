"""Shared fixtures: tiny seeded data sets, an isolated feature cache, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch the network: hubs answer "not cached" at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
