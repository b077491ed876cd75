"""Crash-safe writes: the one place that writes a file or moves a built folder into place.

Files: temp file in the same directory, fsync, ``os.replace``, fsync the directory. A reader
(or a process restarted after SIGKILL or power loss) sees either the old file or the new
one, never a torn mix. Folders built beside their target (a store, a checkpoint, a dataset)
are put in place by rename: :func:`move_into_place` for a new name, :func:`swap_into_place`
to replace an existing folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "fsync_dir",
    "move_into_place",
    "swap_into_place",
    "TMP_PREFIX",
]

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_with(
    path: str | os.PathLike[str],
    write: Callable[[str], None],
    *,
    sync_dir: bool = True,
    fsync: bool = True,
) -> None:
    """Atomically create/replace ``path``; ``write(tmp_path)`` fills a temp file next to it.

    ``sync_dir=False`` leaves the directory fsync to the caller (batched writes);
    ``fsync=False`` skips both fsyncs (a cache whose loss only costs a recompute: still never
    torn, but not guaranteed to survive a power loss)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir and fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Atomically write ``data`` to ``path``."""

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    atomic_write_with(path, _write, fsync=fsync)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """Atomically write ``text`` (UTF-8, newlines as given) to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def move_into_place(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename a finished file or folder ``src`` to ``dst`` (same filesystem; an existing file,
    or an empty folder on POSIX, is replaced) and fsync ``dst``'s directory: the rename is the
    commit point of whatever was built under ``src``."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def swap_into_place(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the finished folder ``new`` at ``target``, replacing the folder there if any.

    The old folder is first renamed to a hidden sibling, put back if the second rename fails,
    and removed after it; a crash between the two renames leaves that sibling
    (``.<name>.old-*``) and no ``target``."""
    target = Path(target)
    if not target.exists():
        move_into_place(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    parked = old / "previous"
    try:
        os.replace(target, parked)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(parked, target)  # put the previous folder back
            raise
        finally:
            fsync_dir(target.parent)
    finally:
        if target.exists():  # else putting it back failed: the previous folder stays parked
            shutil.rmtree(old, ignore_errors=True)
