"""Find Debian's ``tuxpaint-stamps-default`` stamps: a folder, a ``.deb``, an installed copy, or a download.

The package (GPL-2) holds ~800 labelled real cut-out photos, ~440 recorded sounds, English labels
with ~100 translations and people speaking the descriptions. It is fetched with ``apt-get
download`` and unpacked with ``dpkg-deb -x``: neither needs root.
"""

from __future__ import annotations

import logging
from pathlib import Path

from spaner.errors import ConfigError

from .debian import download_deb as fetch_deb
from .debian import downloads_dir as _cache_dir  # noqa: F401 - wordnet_source reads it here
from .debian import extract_deb

__all__ = ["PACKAGE", "INSTALLED", "find_stamps", "unpack_deb", "download_deb"]

log = logging.getLogger(__name__)

PACKAGE = "tuxpaint-stamps-default"
INSTALLED = Path("/usr/share/tuxpaint/stamps")
_INNER = Path("usr/share/tuxpaint/stamps")


def _stamps_in(folder: Path) -> Path | None:
    for candidate in (folder / _INNER, folder / "stamps", folder):
        if candidate.is_dir() and any(candidate.glob("*/**/*.txt")):
            return candidate
    return None


def unpack_deb(deb: Path, into: Path) -> Path:
    """``dpkg-deb -x deb into``; returns the stamps folder inside."""
    stamps = _stamps_in(extract_deb(deb, into))
    if stamps is None:
        raise ConfigError(f"{deb}: no Tux Paint stamps inside (expected {_INNER})")
    return stamps


def download_deb() -> Path:
    """The package's ``.deb`` from the machine's apt sources, cached under ~/.cache/spaner/downloads."""
    return fetch_deb(PACKAGE, "about 161 MB")


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
