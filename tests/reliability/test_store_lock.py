"""One writer per store (issue 16, item 4): a second writer is refused, readers are not.

The lock is an flock on ``<parent>/.<name>.lock`` (spaner.index.store_lock). The contention
tests run real processes: a child holding the store open, and in the slow test a real
``spaner serve`` against a real ``spaner ingest``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rel_procs import SPANER, Server, env

DIM = 8

HOLDER = """
import sys
from spaner.index import open_store
store = open_store(sys.argv[1], None)
print("HOLDING", flush=True)
sys.stdin.read()
store.close()
print("CLOSED", flush=True)
"""


def _space():
    from spaner.index import EmbeddingSpace

    return EmbeddingSpace("lock-test", DIM)


def _unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def store_dir(tmp_path: Path) -> Path:
    from spaner.index import Item, create_store

    d = tmp_path / "store"
    with create_store(d, _space()) as s:
        s.add(_unit(3), [Item("text", content=f"t{i}") for i in range(3)])
    return d


def _holder(store: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env(),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"HOLDING"
    return proc


def test_reentrant_in_one_process_and_lock_file_removed(store_dir: Path) -> None:
    from spaner.index import open_store
    from spaner.index.store_lock import lock_path

    a = open_store(store_dir, _space())
    b = open_store(store_dir, _space())  # same process: counted, not refused
    assert lock_path(store_dir).exists()
    info = json.loads(lock_path(store_dir).read_text())
    assert info["pid"] == os.getpid()
    a.close()
    assert lock_path(store_dir).exists()  # b still holds it
    b.close()
    assert not lock_path(store_dir).exists()


def test_second_writer_refused_with_holder_reader_fine(store_dir: Path) -> None:
    from spaner.index import Item, StoreLockedError, open_store

    proc = _holder(store_dir)
    try:
        with pytest.raises(StoreLockedError) as err:
            open_store(store_dir, _space())
        msg = str(err.value)
        assert f"process {proc.pid} (" in msg and "-c" in msg and str(store_dir) in msg
        with pytest.raises(StoreLockedError):  # creating over it is refused the same way
            from spaner.index import create_store

            create_store(store_dir, _space())
        with open_store(store_dir, _space(), read_only=True) as r:  # readers are fine
            assert r.count() == 3
            assert r.search(_unit(1), k=1)[0][0].id in (0, 1, 2)
            from spaner.index import StoreError

            with pytest.raises(StoreError, match="read-only"):
                r.add(_unit(1), [Item("text", content="x")])
        assert proc.poll() is None
    finally:
        proc.stdin.close()
        assert proc.stdout.readline().strip() == b"CLOSED"
        proc.wait(timeout=30)
    with open_store(store_dir, _space()) as s:  # released: the next writer gets it
        assert s.count() == 3


def test_lock_released_when_holder_is_killed(store_dir: Path) -> None:
    from spaner.index import Item, open_store

    proc = _holder(store_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with open_store(store_dir, _space()) as s:  # the stale lock file is reused
        s.add(_unit(1, seed=5), [Item("text", content="after the kill")])
        assert s.count() == 4


@pytest.mark.slow
def test_serve_and_ingest_on_one_store(tmp_path: Path) -> None:
    """A real ``spaner serve`` holds the store; a real ``spaner ingest`` on it is refused with
    the server's pid and command; ``spaner search`` works meanwhile; after the server stops,
    the same ingest succeeds."""
    from spaner.datasets.synthetic import make_synthetic

    store = tmp_path / "store"
    data = tmp_path / "data"
    make_synthetic(data, concepts=2, per_concept=2, seed=1)
    server = Server(store, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        with server.client() as c:
            r = c.post("/v1/items", json={"items": [{"text": "a red square"}]})
            assert r.status_code == 201, r.text
        ingest = subprocess.run(
            [*SPANER, "ingest", str(data), "--store", str(store), "-q"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ingest.returncode == 2, ingest.stderr
        assert f"process {server.pid} (spaner serve" in ingest.stderr, ingest.stderr
        assert "open for writing" in ingest.stderr
        search = subprocess.run(
            [*SPANER, "search", "--store", str(store), "--text", "a red square", "--json"],
            env=env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert search.returncode == 0, search.stderr
        assert "a red square" in search.stdout
        with server.client() as c:  # the server was not disturbed
            assert c.get("/v1/stats").json()["items"] == 1
    finally:
        assert server.stop() in (
            0,
            -signal.SIGTERM,
        )  # uvicorn re-raises SIGTERM after a clean shutdown
    ingest = subprocess.run(
        [*SPANER, "ingest", str(data), "--store", str(store), "-q"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ingest.returncode == 0, ingest.stderr
    from spaner.index import open_store

    with open_store(store, None, read_only=True) as s:
        assert s.count() > 1
