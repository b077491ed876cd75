"""Readers for the archives that games pack their recordings in, standard library only.

* :func:`read_qt_rcc`: a Qt binary resource file (``.rcc``, GCompris packs each activity's
  media in one): ``{"/path/in/resource": bytes}``; zlib- and zstd-compressed entries are
  inflated (zstd needs the ``zstandard`` package).
* :func:`read_opensfx_cat`: OpenTTD's sound catalogue (``opensfx.cat``): ``[(title, wav
  bytes)]``, each title the sound's description with its author and licence ("\\"Cow\\".
  Original ... License: Creative Commons Zero 1.0.").
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

__all__ = ["read_qt_rcc", "read_opensfx_cat"]

_RCC_COMPRESSED, _RCC_DIRECTORY, _RCC_ZSTD = 0x01, 0x02, 0x04


def read_qt_rcc(path: str | Path, suffixes: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file in the ``.rcc`` at ``path`` (only names ending in ``suffixes``, when given)."""
    blob = Path(path).read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node = 22 if version >= 2 else 14  # version 2 added an 8-byte modification time per node
    out: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6  # length, then a 4-byte hash, then UTF-16 code units
        return blob[start : start + 2 * length].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        at = tree + index * node
        name_offset, flags = struct.unpack(">IH", blob[at : at + 6])
        name = name_at(name_offset) if index else ""
        if flags & _RCC_DIRECTORY:
            count, first = struct.unpack(">II", blob[at + 6 : at + 14])
            stack.extend((child, f"{prefix}{name}/") for child in range(first, first + count))
            continue
        full = prefix + name
        if suffixes and not full.lower().endswith(suffixes):
            continue
        (offset,) = struct.unpack(">I", blob[at + 10 : at + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        raw = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & _RCC_COMPRESSED:
            raw = zlib.decompress(raw[4:])  # a 4-byte uncompressed length, then zlib
        elif flags & _RCC_ZSTD:
            import zstandard

            raw = zstandard.ZstdDecompressor().decompress(raw)
        out[full] = raw
    return out


def read_opensfx_cat(path: str | Path) -> list[tuple[str, bytes]]:
    """The sounds of an OpenTTD ``.cat``: a table of (offset, size) pairs, the first offset
    saying how long the table is; at each offset a length-prefixed, NUL-terminated title, then
    ``size`` bytes of a RIFF/WAVE file."""
    blob = Path(path).read_bytes()
    (first,) = struct.unpack("<I", blob[:4])
    count = (first & 0x7FFFFFFF) // 8
    out = []
    for i in range(count):
        offset, size = struct.unpack("<II", blob[8 * i : 8 * i + 8])
        offset &= 0x7FFFFFFF
        n = blob[offset]
        title = blob[offset + 1 : offset + 1 + n].rstrip(b"\0").decode("latin-1")
        start = offset + 1 + n  # the size counts the WAVE file alone
        out.append((title, blob[start : start + size]))
    return out
