"""Find Debian's ``tuxpaint-stamps-default`` stamps: a folder, a ``.deb``, an installed copy, or a download.

The package (GPL-2) holds ~800 labelled real cut-out photos, ~440 recorded sounds, English labels
with ~100 translations and people speaking the descriptions. It is fetched with ``apt-get
download`` and unpacked with ``dpkg-deb -x``: neither needs root.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from spaner.errors import ConfigError

__all__ = ["PACKAGE", "INSTALLED", "find_stamps", "unpack_deb", "download_deb"]

log = logging.getLogger(__name__)

PACKAGE = "tuxpaint-stamps-default"
INSTALLED = Path("/usr/share/tuxpaint/stamps")
_INNER = Path("usr/share/tuxpaint/stamps")


def _cache_dir() -> Path:
    root = os.environ.get("SPANER_DOWNLOADS") or Path.home() / ".cache" / "spaner" / "downloads"
    return Path(root)


def _stamps_in(folder: Path) -> Path | None:
    for candidate in (folder / _INNER, folder / "stamps", folder):
        if candidate.is_dir() and any(candidate.glob("*/**/*.txt")):
            return candidate
    return None


def unpack_deb(deb: Path, into: Path) -> Path:
    """``dpkg-deb -x deb into``; returns the stamps folder inside."""
    if shutil.which("dpkg-deb") is None:
        raise ConfigError(f"{deb}: dpkg-deb is needed to unpack it (Debian/Ubuntu: package dpkg)")
    into.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{deb}: dpkg-deb could not unpack it: {proc.stderr.strip()[:300]}")
    stamps = _stamps_in(into)
    if stamps is None:
        raise ConfigError(f"{deb}: no Tux Paint stamps inside (expected {_INNER})")
    return stamps


def download_deb() -> Path:
    """The package's ``.deb`` from the machine's apt sources, cached under ~/.cache/spaner/downloads."""
    cache = _cache_dir()
    found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise ConfigError(
            f"{PACKAGE} is not installed and apt-get is not available to fetch it: download the "
            f".deb elsewhere and pass it with --from PATH"
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        log.info("fetching %s with apt-get download (about 161 MB)", PACKAGE)
        proc = subprocess.run(
            ["apt-get", "download", "-q", PACKAGE], cwd=tmp, capture_output=True, text=True
        )
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or not debs:
            raise ConfigError(
                f"apt-get download {PACKAGE} failed ({proc.stderr.strip()[:300] or 'no .deb'}); "
                "run `apt-get update` first, or pass a stamps folder or .deb with --from PATH"
            )
        target = cache / debs[0].name
        from spaner.index.atomic_io import move_into_place

        move_into_place(debs[0], target)
    return target


def find_stamps(source: Path | None, workdir: Path) -> Path:
    """The stamps folder: ``source`` (a folder or a .deb), else the installed copy, else a download
    unpacked under ``workdir``."""
    if source is not None:
        source = Path(source)
        if source.is_file() and source.suffix == ".deb":
            return unpack_deb(source, workdir)
        if source.is_dir():
            stamps = _stamps_in(source)
            if stamps is None:
                raise ConfigError(f"{source}: no Tux Paint stamps found (NAME.txt labels)")
            return stamps
        raise ConfigError(f"{source}: not a folder or a .deb file")
    if _stamps_in(INSTALLED) is not None:
        return INSTALLED
    return unpack_deb(download_deb(), workdir)
