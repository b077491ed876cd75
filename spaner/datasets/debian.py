"""Debian packages as data sources: fetch a ``.deb`` with ``apt-get download`` into a cache and
unpack it with ``dpkg-deb -x``; neither needs root, and the package is never installed.

The cache is ``$SPANER_DOWNLOADS``, else ``~/.cache/spaner/downloads``; a package already there
is not fetched again (any version: the newest file name wins).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from spaner.errors import ConfigError

__all__ = ["downloads_dir", "download_deb", "extract_deb"]

log = logging.getLogger(__name__)


def downloads_dir() -> Path:
    """Where fetched ``.deb`` files are kept."""
    root = os.environ.get("SPANER_DOWNLOADS") or Path.home() / ".cache" / "spaner" / "downloads"
    return Path(root)


def download_deb(package: str, size: str = "") -> Path:
    """``package``'s ``.deb`` from the machine's apt sources, cached (see the module doc).
    ``size`` is only said in the log line ("about 161 MB")."""
    cache = downloads_dir()
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise ConfigError(
            f"{package} is not cached and apt-get is not available to fetch it: download the "
            f".deb elsewhere and put it in {cache}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        log.info("fetching %s with apt-get download%s", package, f" ({size})" if size else "")
        proc = subprocess.run(
            ["apt-get", "download", "-q", package], cwd=tmp, capture_output=True, text=True
        )
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or not debs:
            raise ConfigError(
                f"apt-get download {package} failed ({proc.stderr.strip()[:300] or 'no .deb'}); "
                f"run `apt-get update` first, or put the .deb in {cache}"
            )
        target = cache / debs[0].name
        from spaner.index.atomic_io import move_into_place

        move_into_place(debs[0], target)
    return target


def extract_deb(deb: Path, into: Path) -> Path:
    """``dpkg-deb -x deb into``; returns ``into``."""
    if shutil.which("dpkg-deb") is None:
        raise ConfigError(f"{deb}: dpkg-deb is needed to unpack it (Debian/Ubuntu: package dpkg)")
    into.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{deb}: dpkg-deb could not unpack it: {proc.stderr.strip()[:300]}")
    return into
