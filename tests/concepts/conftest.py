"""Fixtures: a tiny WordNet 3.0 database in the real file format (``wndb(5WN)``), written into a folder.

Six synsets: entity (noun.Tops) > animal > canine > dog ("domestic dog"), and bark, "the sound made
by a dog" (noun.communication) with its verb bark ("make barking sounds"). Byte offsets are real:
every data line starts with its own 8-digit offset, and the pointers use them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HEADER = (
    "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    "  2 WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.\n"
)

#: key -> (pos, lex file number, words, pointers [(symbol, key)], gloss)
_SYNSETS = {
    "entity": ("n", 3, ["entity"], [("~", "animal")], "that which is perceived to exist"),
    "animal": ("n", 5, ["animal"], [("@", "entity"), ("~", "canine")], "a living organism"),
    "canine": ("n", 5, ["canine"], [("@", "animal"), ("~", "dog")], "a carnivore"),
    "dog": ("n", 5, ["dog", "domestic_dog"], [("@", "canine")], "a member of the genus Canis"),
    "bark": ("n", 10, ["bark"], [("+", "bark_v")], "the sound made by a dog"),
    "bark_v": ("v", 32, ["bark"], [("+", "bark")], "make barking sounds"),
}
_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}


def _line(key: str, offsets: dict[str, int]) -> str:
    pos, lex, words, ptrs, gloss = _SYNSETS[key]
    parts = [f"{offsets[key]:08d}", f"{lex:02d}", pos, f"{len(words):02x}"]
    for w in words:
        parts += [w, "0"]
    parts.append(f"{len(ptrs):03d}")
    for sym, target in ptrs:
        parts += [sym, f"{offsets[target]:08d}", _SYNSETS[target][0], "0000"]
    if pos == "v":
        parts += ["01", "+", "02", "00"]
    return " ".join(parts) + f" | {gloss}  \n"


def write_wordnet(folder: Path) -> Path:
    """Write the database files (no ``lexnames``: Debian's package has none either)."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets = {k: 0 for k in _SYNSETS}
    for _ in range(2):  # offsets are fixed-width, so the second pass is exact
        for pos in _FILES:
            at = len(_HEADER)
            for key, spec in _SYNSETS.items():
                if spec[0] == pos:
                    offsets[key] = at
                    at += len(_line(key, offsets).encode())
    for pos, name in _FILES.items():
        data = _HEADER + "".join(_line(k, offsets) for k, s in _SYNSETS.items() if s[0] == pos)
        (folder / f"data.{name}").write_text(data, encoding="utf-8")
        index: dict[str, list[str]] = {}
        for key, (p, _, words, _ptrs, _) in _SYNSETS.items():
            if p == pos:
                for w in words:
                    index.setdefault(w.lower(), []).append(key)
        lines = []
        for lemma in sorted(index):
            keys = index[lemma]
            syms = sorted({s for k in keys for s, _ in _SYNSETS[k][3]})
            lines.append(
                f"{lemma} {pos} {len(keys)} {len(syms)} {' '.join(syms)} {len(keys)} 0 "
                + " ".join(f"{offsets[k]:08d}" for k in keys)
                + "  \n"
            )
        (folder / f"index.{name}").write_text(_HEADER + "".join(lines), encoding="utf-8")
        (folder / f"{name}.exc").write_text("", encoding="utf-8")
    (folder / "noun.exc").write_text("dogs dog\n", encoding="utf-8")
    return folder


def offset_of(key: str, folder: Path) -> str:
    """The WordNet id (``n########``) of ``key`` in the written database."""
    pos = _SYNSETS[key][0]
    for line in (folder / f"data.{_FILES[pos]}").read_text().splitlines():
        if not line.startswith(" ") and _SYNSETS[key][2][0] in line.split()[4:5]:
            return f"{pos}{line[:8]}"
    raise KeyError(key)


@pytest.fixture
def tiny_wordnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The tiny database as SPANER's WordNet (``SPANER_WORDNET`` pointing at it)."""
    from spaner.concepts.wordnet import load_wordnet

    db = write_wordnet(tmp_path / "wordnet-db")
    monkeypatch.setenv("SPANER_DOWNLOADS", str(tmp_path / "downloads"))
    monkeypatch.setenv("SPANER_WORDNET", str(db))
    load_wordnet.cache_clear()
    wn = load_wordnet()
    assert wn is not None
    yield wn
    load_wordnet.cache_clear()


@pytest.fixture
def no_wordnet(monkeypatch: pytest.MonkeyPatch):
    """WordNet switched off, as on a machine without it."""
    from spaner.concepts.wordnet import load_wordnet

    monkeypatch.setenv("SPANER_WORDNET", "off")
    load_wordnet.cache_clear()
    yield
    load_wordnet.cache_clear()


@pytest.fixture
def wordnet_files():
    """The writer and the id lookup, for tests that need the files themselves."""
    from types import SimpleNamespace

    return SimpleNamespace(write=write_wordnet, offset_of=offset_of)
