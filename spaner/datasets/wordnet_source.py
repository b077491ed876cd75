"""Find WordNet 3.0 from Debian's ``wordnet-base``: a folder, a ``.deb``, an installed copy, or a download.

The package ships the WordNet database files (``data.*``, ``index.*``, ``*.exc``, ``cntlist.rev``)
under ``/usr/share/wordnet`` but not the ``lexnames`` file that nltk's reader opens first: its 45
lines (number, lexicographer file, syntactic category) are fixed by WordNet's file format and
listed in ``lexnames(5WN)``, so they are written from :data:`LEXNAMES`. nltk's reader also refuses
files outside its root (symbolic links included), so the database is copied into one folder of
the download cache (about 24 MB, once) beside the written ``lexnames``. It is fetched like the Tux
Paint stamps (:mod:`.tuxpaint_source`): ``apt-get download`` and ``dpkg-deb -x``, no root.

``SPANER_WORDNET`` names a folder of WordNet files or a ``.deb`` to use instead; ``off`` disables
WordNet (the product works without it, see :mod:`spaner.concepts.wordnet`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from spaner.errors import ConfigError

from .tuxpaint_source import _cache_dir

__all__ = ["PACKAGE", "INSTALLED", "LEXNAMES", "ENV", "find_wordnet", "prepare_root"]

log = logging.getLogger(__name__)

PACKAGE = "wordnet-base"
INSTALLED = Path("/usr/share/wordnet")
_INNER = Path("usr/share/wordnet")
ENV = "SPANER_WORDNET"
#: the database files nltk's reader needs (``index.sense`` is optional: sense keys only)
_NEEDED = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
)
_OPTIONAL = ("cntlist.rev", "index.sense", "sentidx.vrb", "sents.vrb")

#: WordNet 3.0's lexicographer files in number order (``lexnames(5WN)``); category 1-4 =
#: noun, verb, adjective, adverb
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def _has_db(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _NEEDED)


def _write_lexnames(root: Path) -> None:
    lines = [f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
    (root / "lexnames").write_text("\n".join(lines) + "\n", encoding="utf-8")


def prepare_root(db: Path, root: Path) -> Path:
    """Copy the WordNet database in ``db`` into ``root`` and write ``lexnames`` there (unless
    ``db`` is ``root`` and already has one); returns ``root``, a folder nltk's reader opens."""
    if not _has_db(db):
        missing = [n for n in _NEEDED if not (db / n).is_file()]
        raise ConfigError(f"{db}: not a WordNet database (missing {', '.join(missing)})")
    same = (root / "lexnames").is_file() and all(
        (root / n).is_file() and (root / n).stat().st_size == (db / n).stat().st_size
        for n in _NEEDED
    )
    if db.resolve() != root.resolve() and not same:  # copied once, not by every process
        tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=root.parent))
        try:
            for name in _NEEDED + _OPTIONAL:
                if (db / name).is_file():
                    shutil.copyfile(db / name, tmp / name)
            _write_lexnames(tmp)
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    elif not (root / "lexnames").is_file():
        _write_lexnames(root)
    return root


def _download_db(into: Path) -> Path:
    """``apt-get download wordnet-base`` and ``dpkg-deb -x`` under ``into``; the database folder."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise ConfigError(f"{PACKAGE} is not installed and {tool} is not available to fetch it")
    into.mkdir(parents=True, exist_ok=True)
    log.info("fetching %s with apt-get download (about 6.5 MB)", PACKAGE)
    proc = subprocess.run(
        ["apt-get", "download", "-q", PACKAGE], cwd=into, capture_output=True, text=True
    )
    debs = sorted(into.glob("*.deb"))
    if proc.returncode != 0 or not debs:
        raise ConfigError(
            f"apt-get download {PACKAGE} failed ({proc.stderr.strip()[:300] or 'no .deb'}); "
            f"run `apt-get update` first, or set {ENV} to a WordNet folder or .deb"
        )
    return _unpack(debs[-1], into / "x")


def _unpack(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"{deb}: dpkg-deb could not unpack it: {proc.stderr.strip()[:300]}")
    return into / _INNER


def find_wordnet(source: Path | None = None) -> Path:
    """A folder nltk's WordNet reader opens: from ``source`` (a folder of WordNet files or a
    ``wordnet-base`` .deb), else ``$SPANER_WORDNET``, else the download cache, else the installed
    copy (copied into the cache), else ``apt-get download``. Raises :class:`ConfigError` with
    what to do when none can be had."""
    if source is None and os.environ.get(ENV):
        source = Path(os.environ[ENV])
    cache = _cache_dir()
    root = cache / "wordnet-3.0"
    if source is None and _has_db(root) and (root / "lexnames").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    if source is not None:
        source = Path(source)
        if source.is_file() and source.suffix == ".deb":
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                return prepare_root(_unpack(source, Path(tmp)), root)
        if source.is_dir():
            if (source / "lexnames").is_file() and _has_db(source):
                return source  # a complete WordNet folder (nltk's own layout)
            return prepare_root(source, root)
        raise ConfigError(f"{source}: not a WordNet folder or a .deb file")
    if _has_db(INSTALLED):
        return prepare_root(INSTALLED, root)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        return prepare_root(_download_db(Path(tmp)), root)
