"""Named real recordings from Debian packages of games and sound themes: more sounds by class.

Tux Paint has one recording per concept; this collection adds recordings of the same and other
classes from four packages fetched like Tux Paint (:mod:`.debian`: ``apt-get download`` into a
cache, ``dpkg-deb -x``, nothing installed). Only recordings whose name gives a clear class are
kept, each by an entry of a hand-written table below (the file or title, its class, and the
original recording it was edited from, so two edits of one recording never land on both sides
of a split). Classes use Tux Paint's concept names where the thing is the same ("black cat",
"crash cymbal"), so the two collections merge by concept.

| package | recordings | licence (the package's ``copyright`` file) |
|---|---|---|
| ``gcompris-qt-data`` | farm animals and orchestra instruments (GPL-3+); memory-game recordings by Lionel Allorge (``*_LA.ogg``, Free Art License) | GPL-3+; Free Art License |
| ``openttd-opensfx`` | OpenSFX: vehicles, machines, animals, weather; each title names its author and licence | CC-BY-SA-3.0 as a whole (CC-BY-3.0 / CC0 singly) |
| ``sound-icons`` | single instrument notes and a canary | GPL-2+ |
| ``sound-theme-freedesktop`` | a bell, a telephone, an alarm clock, a camera shutter | CC-BY-3.0, CC-BY-SA-3.0, GPL-2+ (per file) |

Written to ``out``: ``sounds/SOURCE-NAME.EXT`` (copied as they are), ``manifest.jsonl`` (an audio
item per recording with ``concept``, ``meta.package``, ``meta.group`` = its original recording,
and one English text item per class; no ``split``: benchmarks assign one) and ``dataset.json``
(counts and licences).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaner.errors import ConfigError

from .debian import download_deb, extract_deb
from .game_archives import read_opensfx_cat, read_qt_rcc

__all__ = ["Recording", "RECORDINGS", "LICENCES", "build_sound_packages", "load_recordings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recording:
    """One named recording: where it is in its package, its class, its original."""

    package: str
    #: a path inside the package, ``RCC!/path/in/resource``, or ``CAT!N`` (the N-th sound)
    member: str
    concept: str
    #: the original recording (edits of one original share it); default: the member itself
    group: str = ""


LICENCES = {
    "gcompris-qt-data": "GPL-3+ (activity media); Free Art License (memory-sound *_LA.ogg, "
    "Lionel Allorge)",
    "openttd-opensfx": "CC-BY-SA-3.0 (the collection; single sounds CC-BY-3.0 or CC0)",
    "sound-icons": "GPL-2+",
    "sound-theme-freedesktop": "CC-BY-3.0 (bell), CC-BY-SA-3.0 (alarm clock, camera shutter), "
    "GPL-2+ (telephone)",
}

_GC = "usr/share/gcompris-qt/rcc"
_GC_RES = "/gcompris/src/activities"
_ICONS = "usr/share/sounds/sound-icons"
_FD = "usr/share/sounds/freedesktop/stereo"
_CAT = "usr/share/games/openttd/baseset/opensfx/opensfx.cat"


def _gc(rcc: str, path: str, concept: str, group: str = "") -> Recording:
    return Recording("gcompris-qt-data", f"{_GC}/{rcc}.rcc!{_GC_RES}/{path}", concept, group)


def _sfx(index: int, concept: str, group: str = "") -> Recording:
    return Recording("openttd-opensfx", f"{_CAT}!{index}", concept, group)


def _file(package: str, folder: str, name: str, concept: str) -> Recording:
    return Recording(package, f"{folder}/{name}", concept)


_FARM = "explore_farm_animals/resource/animals"
_INSTR = "instruments/resource"
_MEM = "memory-sound/resource"
_INSTRUMENTS = {
    "tambourine": "tambourine", "snare_drum": "snare drum", "harmonica": "harmonica",
    "violin": "violin", "cello": "cello", "accordion": "accordion", "bongo": "bongo drums",
    "electric_guitar": "guitar", "banjo": "banjo", "triangle": "triangle", "trumpet": "trumpet",
    "horn": "french horn", "piano": "piano", "cymbal": "crash cymbal", "harp": "harp",
    "timpani": "timpani", "saxophone": "saxophone", "maracas": "maracas", "clarinet": "clarinet",
    "guitar": "guitar", "tuba": "tuba", "trombone": "trombone", "organ": "organ",
    "drum_kit": "drum kit", "castanets": "castanets", "flute_traversiere": "flute",
}  # fmt: skip
_FARM_ANIMALS = {
    "owl": "owl", "pig": "pig", "chickens": "brown hen", "cat": "black cat", "horse": "horse",
    "cow": "cow", "dog": "dog", "duck": "duck", "sheep": "sheep",
}  # fmt: skip
_MEMORY = {
    "LRStartAndStopCarEngine1LACut": "car engine", "LRBuddhist_gong_05_LA": "gong",
    "guitar_melody": "guitar", "guitar_son1": "guitar", "guitar_son2": "guitar",
    "guitar_son3": "guitar", "guitar_son4": "guitar", "LRDoor_Open_2_LA": "door",
    "LRTrain_slowing_down_01_LA_cut": "train", "LRBark_1_LA_cut": "dog", "LRBark_3_LA_cut": "dog",
    "LRApplauses_1_LA_cut": "applause", "LRHeart_beat_01_LA": "heartbeat",
    "LRFrogsInPondDuringStormLACut": "frog", "LRRain_in_garden_01_LA_cut": "rain",
    **{f"LRFactory_noise_0{i}_LA": "factory noise" for i in range(1, 7)},
}  # fmt: skip
#: OpenSFX sound index -> (class, original recording); toyland mixes and UI sounds are left out
_OPENSFX = {
    3: ("factory whistle", ""), 4: ("steam train", "steam train horn 01"),
    5: ("steam train", "steam train horn 01"), 6: ("ship horn", ""), 7: ("ship horn", ""),
    8: ("propeller plane", ""), 9: ("jet plane", "Passenger jet departs 2"),
    10: ("train", ""), 12: ("electric spark", ""), 14: ("railroad crossing", ""),
    17: ("crash", "crash.wav"), 18: ("explosion", ""), 19: ("crash", "crash.wav"),
    20: ("cash register", ""), 22: ("morse code", ""), 24: ("helicopter", ""),
    25: ("truck", "file0375"), 26: ("truck", "file0375"), 27: ("bus", ""), 28: ("bus", ""),
    29: ("applause", ""), 33: ("jackhammer", ""), 35: ("car horn", ""), 36: ("sheep", ""),
    37: ("cow", ""), 38: ("horse", ""), 40: ("circular saw", ""), 52: ("wind", "wind1"),
    54: ("falling tree", ""), 55: ("falling tree", ""), 56: ("chainsaw", ""),
    57: ("wind", "wind1"), 59: ("jet plane", ""), 61: ("jet plane", ""), 65: ("train", ""),
    66: ("bird", ""), 67: ("lion", ""), 68: ("monkey", ""), 69: ("propeller plane", ""),
    71: ("train", ""), 72: ("bird", ""),
}  # fmt: skip
_SOUND_ICONS = {
    **{f"cembalo-{n}": "harpsichord" for n in (1, 2, 3, 6, 10, 11, 12)},
    "klavichord-4": "clavichord", "guitar-12": "guitar", "guitar-13": "guitar",
    "piano-3": "piano", "electric-piano-3": "piano", "trumpet-1": "trumpet",
    "trumpet-12": "trumpet", "violoncello-7": "cello", "cymbaly-1": "crash cymbal",
    "xylofon": "xylophone", "canary-long": "canary",
}  # fmt: skip
_FREEDESKTOP = {
    "bell": "bell", "phone-incoming-call": "telephone ringing", "alarm-clock-elapsed": "alarm clock",
    "camera-shutter": "camera",
}  # fmt: skip

RECORDINGS: list[Recording] = [
    *(_gc("explore_farm_animals", f"{_FARM}/{k}.ogg", c) for k, c in _FARM_ANIMALS.items()),
    *(_gc("instruments", f"{_INSTR}/{k}.ogg", c) for k, c in _INSTRUMENTS.items()),
    *(_gc("memory-sound", f"{_MEM}/{k}.ogg", c) for k, c in _MEMORY.items()),
    *(_sfx(i, c, g) for i, (c, g) in _OPENSFX.items()),
    *(_file("sound-icons", _ICONS, f"{k}.wav", c) for k, c in _SOUND_ICONS.items()),
    *(_file("sound-theme-freedesktop", _FD, f"{k}.oga", c) for k, c in _FREEDESKTOP.items()),
]


def _item_id(rec: Recording) -> str:
    tail = rec.member.rsplit("!", 1)[-1]
    name = Path(tail).stem if not tail.isdigit() else f"sfx{int(tail):02d}"
    return f"{rec.package}.{name}"


def load_recordings(root: Path, recordings: list[Recording]) -> dict[Recording, tuple[str, bytes]]:
    """The bytes of each recording found under ``root`` (packages unpacked there, one folder per
    package) and its file suffix; a missing one is logged and left out."""
    out: dict[Recording, tuple[str, bytes]] = {}
    archives: dict[str, Any] = {}
    for rec in recordings:
        path, _, key = rec.member.partition("!")
        full = root / rec.package / path
        try:
            if not key:
                out[rec] = (full.suffix, full.read_bytes())
                continue
            if full not in archives:
                archives[full] = (
                    read_qt_rcc(full) if full.suffix == ".rcc" else read_opensfx_cat(full)
                )
            archive = archives[full]
            if isinstance(archive, dict):
                out[rec] = (Path(key).suffix, archive[key])
            else:
                out[rec] = (".wav", archive[int(key)][1])
        except (OSError, KeyError, IndexError, ValueError) as exc:
            log.warning("%s: %s not found (%s); left out", rec.package, rec.member, exc)
    return out


def build_sound_packages(
    out: str | os.PathLike[str],
    *,
    recordings: list[Recording] | None = None,
    unpacked: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build the collection into ``out`` (see the module doc); returns ``dataset.json``'s
    content. ``unpacked``: a folder with the packages already unpacked (one sub-folder per
    package name), else they are fetched and unpacked in a temporary folder."""
    recordings = RECORDINGS if recordings is None else recordings
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ConfigError(f"{out} exists and is not empty; pass overwrite=True to rebuild it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        root = Path(unpacked) if unpacked is not None else tmp / "packages"
        if unpacked is None:
            for package in sorted({r.package for r in recordings}):
                extract_deb(download_deb(package), root / package)
        data = tmp / "data"
        (data / "sounds").mkdir(parents=True)
        found = load_recordings(root, recordings)
        rows: list[dict[str, Any]] = []
        for rec, (suffix, blob) in found.items():
            iid = _item_id(rec)
            rel = f"sounds/{iid}{suffix}"
            (data / rel).write_bytes(blob)
            meta = {"kind": "sound", "package": rec.package, "member": rec.member}
            meta["group"] = f"{rec.package}:{rec.group or rec.member}"
            rows.append({"id": iid, "concept": rec.concept, "audio": rel, "meta": meta})
        for concept in sorted({r["concept"] for r in rows}):
            rows.append(
                {
                    "id": f"text.{concept}",
                    "concept": concept,
                    "text": concept,
                    "meta": {"kind": "label", "lang": "en"},
                }
            )
        (data / "manifest.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows),
            encoding="utf-8",
        )
        packages = sorted({r.package for r in found})
        info = {
            "name": "sound-packages",
            "recordings": len(found),
            "missing": len(recordings) - len(found),
            "classes": len({r.concept for r in found}),
            "by_package": {p: sum(r.package == p for r in found) for p in packages},
            "licences": {p: LICENCES.get(p, "see the package's copyright file") for p in packages},
        }
        (data / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        from spaner.index.atomic_io import swap_into_place

        swap_into_place(data, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "sound packages: %d recordings, %d classes in %s", info["recordings"], info["classes"], out
    )
    return info
