"""A full disk (issue 16, item 3): ENOSPC injected at every write point, plus a real tmpfs.

:class:`DiskFull` wraps every call that writes under a folder (``open`` for writing,
``os.open`` with a write flag, ``os.mkdir``, ``os.replace``/``os.rename``, ``os.fsync``,
``faiss.write_index``, the safetensors writer and SQLite transactions) and makes the k-th
one fail like a full disk: ``OSError(ENOSPC)``, or SQLite's "database or disk is full".
Each scenario first counts its write points, then fails each one in turn (k = 1, 2, ...
until a run no longer reaches k). After every injected failure: the error is clear (HTTP 507
with a message, or a CLI/API error naming the store and the cause), nothing stored before is
lost or changed, the store opens, and the next write succeeds.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class DiskFull:
    """Count write calls under ``root``; with ``fail_at=k`` the k-th raises ENOSPC."""

    def __init__(self, root: Path, fail_at: int = 0) -> None:
        self.root = str(Path(root).resolve())
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.fired: str | None = None

    def _under(self, path: Any) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(self.root)
        except TypeError:
            return False

    def _hit(self, what: str, path: Any, sqlite: bool = False) -> None:
        if not self._under(path):
            return
        self.calls.append(f"{what} {path}")
        if len(self.calls) == self.fail_at:
            self.fired = self.calls[-1]
            if sqlite:
                raise sqlite3.OperationalError("database or disk is full")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))

    @contextmanager
    def active(self, mp: pytest.MonkeyPatch) -> Iterator[DiskFull]:
        import faiss
        from spaner.index import faiss_store, metadata

        import spaner.model.checkpoint as ckpt

        def wrap(obj: Any, name: str, path_of: Callable[..., Any], what: str) -> None:
            real = getattr(obj, name)

            def hooked(*a: Any, **kw: Any) -> Any:
                p = path_of(*a, **kw)
                if p is not None:
                    self._hit(what, p)
                return real(*a, **kw)

            mp.setattr(obj, name, hooked)

        def open_path(file: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
            m = kw.get("mode", mode)
            return file if isinstance(file, (str, os.PathLike)) and set(m) & set("wax+") else None

        def fd_path(fd: int) -> str | None:
            try:
                return os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return None

        wrap(builtins, "open", open_path, "open")
        wrap(io, "open", open_path, "open")
        wrap(os, "open", lambda p, flags, *a, **k: p if flags & _WRITE_FLAGS else None, "os.open")
        wrap(os, "mkdir", lambda p, *a, **k: p, "mkdir")
        wrap(os, "replace", lambda s, d, *a, **k: d, "replace")
        wrap(os, "rename", lambda s, d, *a, **k: d, "rename")
        wrap(os, "fsync", fd_path, "fsync")
        wrap(faiss, "write_index", lambda idx, p, *a: p, "faiss.write_index")
        wrap(faiss_store.faiss, "write_index", lambda idx, p, *a: p, "faiss.write_index")
        wrap(ckpt, "save_file", lambda t, p, *a, **k: p, "safetensors")

        # SQLite rolls a transaction back when full (the full-text index is in the same ones)
        for name in ("insert", "delete", "ensure_lexical"):
            real_m = getattr(metadata.MetadataDB, name)

            def sq(db: Any, *a: Any, _real: Any = real_m, _n: str = name, **kw: Any) -> Any:
                self._hit(f"sqlite {_n}", db.path, sqlite=True)
                return _real(db, *a, **kw)

            mp.setattr(metadata.MetadataDB, name, sq)
        yield self


Arm = Callable[[], Any]


def _sweep(root: Path, scenario: Callable[[Arm, int], None]) -> int:
    """Run ``scenario(arm, round)`` failing each write point under ``root`` once (the
    scenario wraps the writes under test in ``with arm():``); returns how many points."""
    k, rnd = 1, 0
    while True:
        inj = DiskFull(root, fail_at=k)

        @contextmanager
        def arm(inj: DiskFull = inj) -> Iterator[DiskFull]:
            with pytest.MonkeyPatch.context() as mp, inj.active(mp):
                yield inj

        scenario(arm, rnd)
        rnd += 1
        if inj.fired is None:  # the run had fewer than k write points: all covered
            return k - 1
        k += 1
        assert k < 200, "runaway sweep"


def _unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _snapshot(store: Any) -> dict[int, tuple[bytes, Any]]:
    ids = store.ids().tolist()
    return {i: (store.vectors([i])[0].tobytes(), store.content(i)) for i in ids}


def test_index_layer_add_and_save(tmp_path: Path) -> None:
    """``add`` (content files + SQLite) and ``save`` (the FAISS cache) at every write point."""
    from spaner.index import EmbeddingSpace, Item, StoreFullError, create_store, open_store

    space = EmbeddingSpace("full-disk", 8)
    root = tmp_path / "store"
    create_store(root, space).close()
    failures = {"add": 0, "save": 0}

    def scenario(arm: Arm, rnd: int) -> None:
        with open_store(root, space) as s:
            before = _snapshot(s)
            items = [Item("image", content=f"png {rnd} {j}".encode()) for j in range(2)]
            items.append(Item("text", content=f"text {rnd}"))
            try:
                with arm():
                    s.add(_unit(3, 8, rnd), items)
                added = True
            except StoreFullError as exc:
                assert str(root) in str(exc) and "no space left on device" in str(exc)
                failures["add"] += 1
                added = False
            after = _snapshot(s)
            assert {i: after[i] for i in before} == before  # nothing stored was changed
            assert s.meta.lexical_rows() == s.meta.expected_lexical_rows()  # FTS = items
            assert len(after) == len(before) + (3 if added else 0)
            try:
                with arm():
                    s.save()
            except StoreFullError as exc:
                assert str(root) in str(exc)
                failures["save"] += 1
        with open_store(root, space) as s:  # opens after the failure, holds exactly `after`
            assert _snapshot(s) == after
            assert s.meta.lexical_rows() == s.meta.expected_lexical_rows()
            assert s.lexical_search(f"text {rnd}", 1)[0][0] in after if added else True
            assert not list(root.rglob(".tmp-*"))

    points = _sweep(root, scenario)
    assert points >= 10 and failures["add"] >= 5 and failures["save"] >= 3, (points, failures)
    print(f"index layer: {points} write points failed in turn, errors {failures}")
    with open_store(root, space) as s:  # the next write succeeds
        n = s.count()
        s.add(_unit(1, 8, 999), [Item("text", content="after the sweep")])
        assert s.count() == n + 1


def test_checkpoint_save(tmp_path: Path) -> None:
    from spaner.errors import DiskFullError
    from spaner.model.checkpoint import load_checkpoint, save_checkpoint
    from spaner.pipeline import Spaner

    model = Spaner.from_profile("tiny").model
    path = tmp_path / "ckpt"
    save_checkpoint(model, path, extra={"v": 0})
    fails = 0

    def scenario(arm: Arm, rnd: int) -> None:
        nonlocal fails
        want = load_checkpoint(path)[1]
        try:
            with arm():
                save_checkpoint(model, path, extra={"v": rnd + 1})
        except DiskFullError as exc:
            assert str(path) in str(exc) and "no space left" in str(exc)
            fails += 1
            assert load_checkpoint(path)[1] == want  # the previous checkpoint is intact
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp leftovers

    points = _sweep(tmp_path, scenario)
    assert points >= 5 and fails >= 4, (points, fails)
    print(f"checkpoint save: {points} write points failed in turn, {fails} DiskFullError")
    save_checkpoint(model, path, extra={"v": "last"})
    assert load_checkpoint(path)[1] == {"v": "last"}


@pytest.mark.slow
def test_upload_answers_507(tmp_path: Path) -> None:
    """``POST /v1/items`` with a PNG and a text at every write point of the store."""
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    store = tmp_path / "store"
    state = ServiceState.open(Settings(store=store, profile="tiny", ui=False))
    codes: dict[int, int] = {}
    try:
        with TestClient(create_app(state=state), raise_server_exceptions=False) as c:

            def scenario(arm: Arm, rnd: int) -> None:
                n = c.get("/v1/stats").json()["items"]
                with arm():
                    r = c.post(
                        "/v1/items",
                        files=[("files", ("a.png", _png(rnd), "image/png"))],
                        data={"concept": f"c{rnd}"},
                    )
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                assert r.status_code in (201, 507), r.text
                now = c.get("/v1/stats").json()["items"]
                if r.status_code == 507:
                    body = r.json()
                    assert body["error"] == "insufficient_storage"
                    assert "no space left on device" in body["detail"]
                    assert str(store) in body["detail"]
                    assert now == n
                else:
                    assert now == n + 1

            points = _sweep(store, scenario)
            assert points >= 4 and codes.get(507, 0) >= 4, (points, codes)
            print(f"upload: {points} write points failed in turn, statuses {codes}")
            r = c.post("/v1/items", files=[("files", ("b.png", _png(999), "image/png"))])
            assert r.status_code == 201
            n = c.get("/v1/stats").json()["items"]
    finally:
        state.close()
    from spaner.index import open_store

    with open_store(store, None) as s:  # opens; every item whole
        assert s.count() == n
        for i in s.ids().tolist():
            assert isinstance(s.content(i), bytes)


@pytest.mark.slow
def test_ingest_batch_cli_error(tmp_path: Path) -> None:
    """``spaner ingest`` at every write point of a batch: exit 2, stderr names the store and
    the cause; the store keeps what it had, opens, and the same ingest then succeeds."""
    from spaner.index import open_store

    from spaner.cli.main import main
    from spaner.datasets.synthetic import make_synthetic

    store = tmp_path / "store"
    first, data = tmp_path / "first", tmp_path / "data"
    make_synthetic(first, concepts=2, per_concept=1, seed=1)
    make_synthetic(data, concepts=2, per_concept=2, seed=2)
    assert main(["ingest", str(first), "--store", str(store), "--profile", "tiny", "-q"]) == 0
    with open_store(store, None) as s:
        kept = _snapshot(s)
    errors = 0

    def scenario(arm: Arm, rnd: int) -> None:
        nonlocal errors
        import contextlib

        err = io.StringIO()
        with contextlib.redirect_stderr(err), arm():
            rc = main(["ingest", str(data), "--store", str(store), "--batch-size", "64", "-q"])
        if rc != 0:
            errors += 1
            assert rc == 2
            msg = err.getvalue()
            assert str(store) in msg and "no space left" in msg, msg
        with open_store(store, None) as s:  # opens; what it had is intact; back to it
            snap = _snapshot(s)
            assert {i: snap[i] for i in kept} == kept
            extra = [i for i in snap if i not in kept]
            if extra:
                s.delete(extra)

    points = _sweep(store, scenario)
    assert points >= 5 and errors >= 3, (points, errors)
    print(f"ingest batch: {points} write points failed in turn, {errors} CLI errors")
    assert main(["ingest", str(data), "--store", str(store), "-q"]) == 0


@pytest.mark.slow
def test_real_full_tmpfs(tmp_path: Path) -> None:
    """A real 2 MB tmpfs: uploads until the disk is full answer 507, the store reopens with
    every acknowledged item, and after freeing space the next upload succeeds."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}): needs root")
    try:
        _tmpfs_run(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _tmpfs_run(mnt: Path) -> None:
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState
    from spaner.index import open_store

    rng = np.random.default_rng(0)
    store = mnt / "store"
    ballast = mnt / "ballast"
    state = ServiceState.open(Settings(store=store, profile="tiny", ui=False))
    acked: dict[int, bytes] = {}
    full = 0
    try:
        with TestClient(create_app(state=state), raise_server_exceptions=False) as c:
            ballast.write_bytes(rng.bytes(256 * 1024))
            for i in range(200):
                blob = _noise_png(rng, 96)
                r = c.post("/v1/items", files=[("files", (f"{i}.png", blob, "image/png"))])
                assert r.status_code in (201, 507), r.text
                if r.status_code == 507:
                    full += 1
                    assert "no space left on device" in r.json()["detail"]
                    if full >= 3:
                        break
                else:
                    acked[r.json()["items"][0]["id"]] = blob
            assert full >= 3 and acked
            ballast.unlink()  # free space
            blob = _noise_png(rng, 96)
            r = c.post("/v1/items", files=[("files", ("last.png", blob, "image/png"))])
            assert r.status_code == 201, r.text
            acked[r.json()["items"][0]["id"]] = blob
    finally:
        state.close()
    with open_store(store, None) as s:
        assert s.count() == len(acked)
        for i, blob in acked.items():
            assert s.content(i) == blob
    print(f"real tmpfs run: {len(acked)} uploads stored, {full} answered 507")


def _noise_png(rng: np.random.Generator, side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _png(seed: int) -> bytes:
    return _noise_png(np.random.default_rng(seed), 16)
