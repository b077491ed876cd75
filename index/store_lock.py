"""One writer per store: an exclusive ``fcntl.flock`` on ``<parent>/.<name>.lock``.

Every process that writes a store (``spaner serve``, ``spaner ingest``, ``spaner delete``,
``open_store`` from Python) takes the lock before it opens or creates the store; a second
writer gets :class:`StoreLockedError` naming the process that holds it (pid and command line,
written into the lock file). Readers (``open_store(..., read_only=True)``, ``spaner search``)
take no lock. The kernel drops a flock when its holder exits, so a crashed or SIGKILLed writer
never leaves the store locked.

The lock file sits *beside* the store, not in it: the service's model activation swaps the
store folder by rename, and the lock must stay on the same file across that swap. It is
removed when its last holder releases it (a process that opened the old file before the
removal sees that the path changed and tries again), so no lock file outlives its writer
except after a crash, where the next writer reuses it.

Within one process the lock is re-entrant (counted per lock file): the service holds it for
its lifetime while the store objects it opens and closes take and drop their own counts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .errors import StoreError

__all__ = ["StoreLockedError", "WriterLock", "acquire_writer_lock", "lock_path", "lock_holder"]

log = logging.getLogger(__name__)

_GUARD = threading.Lock()
_HELD: dict[str, _Held] = {}


class StoreLockedError(StoreError):
    """Another process has the store open for writing."""


class _Held:
    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path
        self.count = 0


def lock_path(store: str | os.PathLike[str]) -> Path:
    """The lock file of the store at ``store``: ``<parent>/.<name>.lock``."""
    p = Path(os.path.abspath(store))
    return p.parent / f".{p.name}.lock"


def lock_holder(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the lock file says about its holder (``pid``, ``command``, ``since``), or None."""
    try:
        doc = json.loads(lock_path(store).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _command_line() -> str:
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
        parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    except OSError:
        parts = list(sys.argv)
    if parts and Path(parts[0]).name.startswith("python") and len(parts) > 1:
        parts = parts[1:]
    if parts:
        parts[0] = Path(parts[0]).name
    cmd = " ".join(parts)
    return cmd if len(cmd) <= 300 else cmd[:299] + "…"


def _describe(store: Path) -> str:
    who = lock_holder(store)
    if not who:
        return "another process"
    since = who.get("since")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
    return f"process {who.get('pid', '?')} ({who.get('command') or 'unknown command'}{when})"


class WriterLock:
    """A counted hold on a store's writer lock; :meth:`release` it once (idempotent)."""

    def __init__(self, held: _Held, store: Path) -> None:
        self._held: _Held | None = held
        self.store = store

    @property
    def path(self) -> Path:
        assert self._held is not None
        return self._held.path

    def release(self) -> None:
        with _GUARD:
            held, self._held = self._held, None
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _HELD[str(held.path)]
            with contextlib.suppress(OSError):
                held.path.unlink(missing_ok=True)  # while still locked: see the module doc
            os.close(held.fd)  # drops the flock

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_file(path: Path, store: Path) -> int:
    """Open and flock ``path``; retries when the file was replaced under us."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"{store}: cannot create the writer lock {path} ({exc.strerror}); a writer "
                "needs write access to the store's parent folder"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(
                    f"{store} is open for writing by {_describe(store)}; one writer at a time: "
                    "stop it first (reading, e.g. `spaner search`, works meanwhile), or add "
                    "items through that server's API"
                ) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file after we opened it: take the new one
    raise StoreError(f"{store}: could not take the writer lock {path}")  # pragma: no cover


def acquire_writer_lock(store: str | os.PathLike[str]) -> WriterLock:
    """Take (or, in this process, count once more) the writer lock of ``store``."""
    path = lock_path(store)
    store_p = Path(os.path.abspath(store))
    with _GUARD:
        held = _HELD.get(str(path))
        if held is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _lock_file(path, store_p)
            info = {"pid": os.getpid(), "command": _command_line(), "since": time.time()}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError as exc:  # e.g. a full disk: the lock holds, only the note is lost
                log.warning("%s: could not note the lock holder (%s)", path, exc)
            held = _HELD[str(path)] = _Held(fd, path)
        held.count += 1
        return WriterLock(held, store_p)
