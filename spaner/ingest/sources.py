"""Ingest stage 1 (reader, listing): turn PATH arguments into candidate items, or reasons to skip.

* A folder is walked recursively (sorted, so runs are reproducible). Symlinks are followed
  only when their target stays inside one of the given roots; a symlinked folder is
  visited once.
* A ``.jsonl`` file is a manifest (see :mod:`spaner.training.manifest`): each line gives an ``id``,
  optional ``concept``/``meta`` and modality fields (``text`` inline, others paths relative
  to the manifest). Unlike training, a bad line (invalid JSON, a path escaping the manifest's
  folder, a missing file) is reported and skipped; the other lines still go in.
* Any other file is sniffed: image and audio by their magic bytes, text by a ``.txt`` /
  ``.md`` extension. A file whose extension promises an image or a sound but whose bytes
  are not one is reported as bad; a file that is neither is reported as unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Candidate",
    "Skip",
    "sniff_modality",
    "discover",
    "IMAGE_EXTS",
    "AUDIO_EXTS",
    "TEXT_EXTS",
]

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
AUDIO_EXTS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})
TEXT_EXTS = frozenset({".txt", ".md"})
MANIFEST_EXTS = frozenset({".jsonl"})
_RESERVED = frozenset({"id", "concept", "split", "meta"})


@dataclass
class Candidate:
    """One item to ingest: a file (``path``) or an inline text (``text``)."""

    modality: str
    source: str  # absolute path, or "<manifest>:<line>" for inline text
    path: Path | None = None
    text: str | None = None
    concept: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skip:
    """An input that will not be ingested, and why (``kind``: ``bad`` or ``unknown``)."""

    source: str
    problem: str
    kind: str = "bad"


def sniff_modality(head: bytes) -> str | None:
    """``image`` / ``audio`` from a file's first bytes (at least 12), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):
        return "image"
    if head[:6] in (b"GIF87a", b"GIF89a") or head[:2] == b"BM":
        return "image"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio"
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return "audio"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:  # MPEG frame sync
        return "audio"
    return None


def classify_file(path: Path) -> tuple[str | None, str | None]:
    """(modality, problem) of a plain file; exactly one of them is None."""
    ext = path.suffix.lower()
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    found = sniff_modality(head)
    if found:
        return found, None
    if ext in TEXT_EXTS:
        return "text", None
    if ext in IMAGE_EXTS:
        return None, f"not a valid image: the content is not a known image format (extension {ext})"
    if ext in AUDIO_EXTS:
        return (
            None,
            f"not a valid audio file: the content is not a known audio format (extension {ext})",
        )
    if not head:
        return None, "empty file of unknown type"
    return None, "unknown file type (not an image, audio or .txt/.md text)"


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    real = path.resolve()
    return any(real == r or real.is_relative_to(r) for r in roots)


def _walk(root: Path, roots: Sequence[Path], seen_dirs: set[Path]) -> Iterator[Path | Skip]:
    real = root.resolve()
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        yield Skip(str(root), f"cannot list folder: {exc.strerror or exc}")
        return
    for e in entries:
        p = Path(e.path)
        if e.name.startswith("."):
            continue
        if e.is_symlink() and not _inside(p, roots):
            yield Skip(str(p), "symlink pointing outside the given paths: not followed")
            continue
        if e.is_dir():
            yield from _walk(p, roots, seen_dirs)
        elif e.is_file():
            yield p
        else:
            yield Skip(str(p), "not a regular file")


def _manifest_items(path: Path) -> Iterator[Candidate | Skip]:
    root = path.parent.resolve()
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        yield Skip(str(path), f"cannot read manifest: {exc.strerror or exc}")
        return
    with fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Skip(where, f"not valid JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), (str, int)):
                yield Skip(where, "each line must be a JSON object with an 'id'")
                continue
            concept = obj.get("concept")
            meta = obj.get("meta", {})
            if concept is not None and not isinstance(concept, (str, int)):
                yield Skip(where, "'concept' must be a string")
                continue
            if not isinstance(meta, dict):
                yield Skip(where, "'meta' must be an object")
                continue
            extra = {**meta, "manifest_id": str(obj["id"])}
            if obj.get("split") is not None:
                extra["split"] = obj["split"]
            concept = None if concept is None else str(concept)
            fields = [(k, v) for k, v in obj.items() if k not in _RESERVED]
            if not fields:
                yield Skip(where, "the line has no modality field (text, image, audio, ...)")
            for key, value in fields:
                if key == "text":
                    if not isinstance(value, str) or not value.strip():
                        yield Skip(where, "'text' must be a non-empty string")
                    else:
                        yield Candidate(
                            "text", where, text=value, concept=concept, extra=dict(extra)
                        )
                    continue
                if not isinstance(value, str) or not value.strip():
                    yield Skip(where, f"{key}: expected a relative path string, got {value!r}")
                    continue
                rel = Path(value)
                full = (root / rel).resolve()
                if rel.is_absolute() or not full.is_relative_to(root):
                    yield Skip(
                        where, f"{key}: path {value!r} escapes the manifest's folder; refused"
                    )
                    continue
                if not full.is_file():
                    yield Skip(where, f"{key}: file not found: {value}")
                    continue
                yield Candidate(key, str(full), path=full, concept=concept, extra=dict(extra))


def discover(paths: Sequence[str | Path]) -> Iterator[Candidate | Skip]:
    """Candidates and skips for the PATH arguments, in a reproducible order."""
    roots = [Path(p).resolve() for p in paths]
    seen_dirs: set[Path] = set()
    for given in paths:
        p = Path(given)
        if not p.exists():
            yield Skip(str(p), "no such file or folder")
            continue
        files: Iterator[Path | Skip] = _walk(p, roots, seen_dirs) if p.is_dir() else iter([p])
        for f in files:
            if isinstance(f, Skip):
                yield f
            elif f.suffix.lower() in MANIFEST_EXTS:
                yield from _manifest_items(f)
            else:
                modality, problem = classify_file(f)
                if modality is None:
                    kind = (
                        "unknown"
                        if problem and problem.startswith(("unknown", "empty file"))
                        else "bad"
                    )
                    yield Skip(str(f.resolve()), problem or "unreadable", kind)
                else:
                    yield Candidate(modality, str(f.resolve()), path=f.resolve())
