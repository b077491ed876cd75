"""Content-addressed storage of original item bytes: ``<store>/content/ab/abcdef…``.

Files are named by their sha256, written atomically and never modified, so writing the same
content twice is a no-op and a file written by a batch that later failed to commit is an
orphan that :meth:`ContentStore.orphans` finds (harmless; removed by ``vacuum``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .atomic_io import TMP_PREFIX, atomic_write_bytes, atomic_write_with, fsync_dir

__all__ = ["ContentStore"]


class ContentStore:
    """Immutable blobs keyed by sha256 hex digest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, digest: str, data: bytes) -> None:
        path = self.path_for(digest)
        if not path.exists():
            atomic_write_bytes(path, bytes(data))

    def put_many(self, blobs: dict[str, bytes]) -> None:
        """Write several blobs: each file fsynced and renamed, each directory fsynced once."""
        dirs = set()
        for digest, data in blobs.items():
            path = self.path_for(digest)
            if path.exists():
                continue
            atomic_write_with(
                path, lambda tmp, data=data: Path(tmp).write_bytes(data), sync_dir=False
            )
            dirs.add(path.parent)
        for d in dirs:
            fsync_dir(d)

    def get(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_for(digest))

    def digests(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for sub in self.root.iterdir():
            if sub.is_dir():
                for f in sub.iterdir():
                    if not f.name.startswith(TMP_PREFIX):
                        yield f.name

    def remove_temp_files(self) -> int:
        """Delete temp files left by a crash mid-write; returns how many."""
        n = 0
        if self.root.is_dir():
            for f in self.root.glob(f"*/{TMP_PREFIX}*"):
                f.unlink(missing_ok=True)
                n += 1
        return n
