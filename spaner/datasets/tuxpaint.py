"""The Tux Paint collection: real photos, real sounds, labels and people speaking them.

Built from Debian's ``tuxpaint-stamps-default`` (see :mod:`.tuxpaint_source`). A *stamp* is a
``NAME.txt`` label (English first line, then ``LANG.utf8=...`` translations) beside its picture
``NAME.png``, often a sound ``NAME.ogg`` (a frog's croak beside the frog), and recordings of people
speaking the description, ``NAME_desc.ogg`` (English) and ``NAME_desc_LANG.ogg``.

Written to ``out``:

* ``images/STAMP.jpg``: the photo flattened onto white (transparent cut-outs), longest side at
  most 384 px;
* ``sounds/STAMP.ogg`` and ``speech/STAMP_LANG.ogg``: the recordings, copied as they are;
* ``manifest.jsonl``: one line per item, its ``concept`` the English label without article or
  full stop ("A frog." -> ``frog``: ``frog`` and ``frog-1`` are one concept); a held-out split
  **by concept**: test concepts are never seen in training (60/10/30 train/val/test);
* ``manifest-seen.jsonl``: the same items, split so that test items belong to *trained* concepts
  (per concept, each modality keeps one item in training; a held-out photo or sound brings a copy
  of its concept's English label into its split as the text target);
* ``spoken-digits.jsonl``: people saying the digits (``symbols/math/N*.ogg``) in English and
  other languages, for testing speech models trained elsewhere;
* ``dataset.json``: counts, what was skipped and why, the source.

Everything is deterministic for a given package version and seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaner.errors import ConfigError

from .tuxpaint_source import find_stamps

__all__ = ["TuxPaintConfig", "TuxPaintResult", "build_tuxpaint", "concept_of", "concept_split"]

log = logging.getLogger(__name__)

_ARTICLE = re.compile(r"^(a|an|the|some)\s+", re.IGNORECASE)
_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_MAX_SIDE = 384


@dataclass
class TuxPaintConfig:
    seed: int = 0
    #: spoken-description languages to include (``en`` = ``NAME_desc.ogg``); ``("all",)`` for every one.
    speech_langs: tuple[str, ...] = ("en",)
    #: label translations to include as extra text items (``meta.lang``).
    text_langs: tuple[str, ...] = ("de", "es", "fr")
    val_fraction: float = 0.1
    test_fraction: float = 0.3


@dataclass
class TuxPaintResult:
    out: Path
    counts: dict[str, Any]
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def concept_of(label: str) -> str:
    """``"A frog."`` -> ``"frog"``: lower case, no leading article, no trailing punctuation."""
    text = label.strip().rstrip(".!?").strip()
    return _ARTICLE.sub("", text).lower().strip()


def _read_label(path: Path) -> tuple[str, dict[str, str]]:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    english = lines[0].strip() if lines else ""
    translations: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep and key.endswith(".utf8") and value.strip():
            translations[key[: -len(".utf8")]] = value.strip()
    return english, translations


def _unit(seed: int, *parts: str) -> float:
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _write_photo(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as img:
        img.load()
        rgba = img.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    rgb.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.LANCZOS)
    rgb.save(dst, "JPEG", quality=90)


def _check_audio(path: Path) -> None:
    import soundfile as sf

    info = sf.info(str(path))
    if info.frames <= 0 or info.duration > 600:
        raise ValueError(f"{info.duration:.1f} s of audio")


class _Builder:
    def __init__(self, stamps: Path, out: Path, config: TuxPaintConfig) -> None:
        self.stamps, self.out, self.config = stamps, out, config
        self.items: list[dict[str, Any]] = []
        self.digits: list[dict[str, Any]] = []
        self.skipped: dict[str, int] = defaultdict(int)
        self.examples: dict[str, str] = {}
        self.texts_seen: set[tuple[str, str]] = set()
        self.text_ids: dict[tuple[str, str], int] = defaultdict(int)

    def skip(self, reason: str, path: Path) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, str(path.relative_to(self.stamps)))

    def run(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        for sub in ("images", "sounds", "speech"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        labels = sorted(self.stamps.rglob("*.txt"))
        for txt in tqdm(labels, desc="tuxpaint stamps", unit="stamp", disable=not progress):
            self.stamp(txt)
        math = self.stamps / "symbols" / "math"
        if math.is_dir():
            self.spoken_digits(math)

    def stamp(self, txt: Path) -> None:
        english, translations = _read_label(txt)
        concept = concept_of(english)
        if not concept:
            self.skip("label has no English text", txt)
            return
        rel = txt.relative_to(self.stamps).with_suffix("")
        sid = "-".join(rel.parts)
        meta = {"stamp": sid, "category": "/".join(rel.parts[:-1])}
        png = txt.with_suffix(".png")
        if png.is_file():
            dst = self.out / "images" / f"{sid}.jpg"
            try:
                _write_photo(png, dst)
                self.add(f"{sid}.image", concept, "image", f"images/{sid}.jpg", meta, "photo")
            except Exception as exc:  # noqa: BLE001 - reported, not fatal
                self.skip(f"unreadable photo ({type(exc).__name__})", png)
        elif txt.with_suffix(".svg").is_file():
            self.skip("vector drawing only (SVG): no photo", txt.with_suffix(".svg"))
        else:
            self.skip("label without a picture", txt)
        for ext in (".ogg", ".wav"):
            sound = txt.with_suffix(ext)
            if sound.is_file():
                self.copy_audio(sound, f"sounds/{sid}{ext}", f"{sid}.sound", concept, meta, "sound")
                break
        self.add_text(concept, english, "en", meta)
        for lang in self.config.text_langs:
            if lang in translations:
                self.add_text(concept, translations[lang], lang, meta)
        langs = self.config.speech_langs
        for desc in sorted(txt.parent.glob(f"{txt.stem}_desc*")):
            if desc.suffix not in (".ogg", ".wav"):
                continue
            lang = desc.stem[len(txt.stem) + len("_desc") :].lstrip("_") or "en"
            if "all" in langs or lang in langs:
                self.copy_audio(
                    desc,
                    f"speech/{sid}_{lang}{desc.suffix}",
                    f"{sid}.speech.{lang}",
                    concept,
                    {**meta, "lang": lang},
                    "speech",
                )

    def add(self, iid: str, concept: str, modality: str, value: str, meta: dict, kind: str) -> None:
        self.items.append(
            {"id": iid, "concept": concept, modality: value, "meta": {**meta, "kind": kind}}
        )

    def add_text(self, concept: str, text: str, lang: str, meta: dict) -> None:
        text = text.strip().rstrip(".").strip()
        if not text or (concept, text) in self.texts_seen:
            return  # one text item per concept and wording (frog and frog-1 share "A frog.")
        self.texts_seen.add((concept, text))
        self.text_ids[(concept, lang)] += 1
        n = self.text_ids[(concept, lang)]
        iid = f"text.{concept}.{lang}" + (f".{n}" if n > 1 else "")
        self.add(iid, concept, "text", text, {**meta, "lang": lang}, "label")

    def copy_audio(
        self, src: Path, rel: str, iid: str, concept: str, meta: dict, kind: str
    ) -> bool:
        try:
            _check_audio(src)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            self.skip(f"unreadable audio ({type(exc).__name__})", src)
            return False
        shutil.copyfile(src, self.out / rel)
        self.add(iid, concept, "audio", rel, meta, kind)
        return True

    def spoken_digits(self, math: Path) -> None:
        for value, word in enumerate(_DIGITS):
            for clip in sorted(math.glob(f"{value}*")):
                rest = clip.stem[len(str(value)) :]
                if clip.suffix not in (".ogg", ".wav") or (rest and not rest.startswith("_")):
                    continue
                lang = rest.lstrip("_") or "en"
                if lang.startswith("desc"):
                    continue  # descriptions say more than the digit
                rel = f"speech/digit-{value}_{lang}{clip.suffix}"
                try:
                    _check_audio(clip)
                except Exception:  # noqa: BLE001
                    self.skip("unreadable audio (spoken digit)", clip)
                    continue
                shutil.copyfile(clip, self.out / rel)
                english = lang in ("en", "en_GB", "en_AU", "en_CA")
                self.digits.append(
                    {
                        "id": f"digit-{value}.{lang}",
                        "concept": word,
                        "audio": rel,
                        "split": "test",
                        "meta": {"lang": lang, "english": english, "kind": "spoken digit"},
                    }
                )


def _split_for(u: float, config: TuxPaintConfig) -> str:
    """``test`` / ``val`` / ``train`` for a uniform draw ``u`` by the configured fractions."""
    if u < config.test_fraction:
        return "test"
    return "val" if u < config.test_fraction + config.val_fraction else "train"


def concept_split(concept: str, config: TuxPaintConfig | None = None) -> str:
    """The by-concept split (``manifest.jsonl``) that ``concept`` falls in, whether or not the
    collection has it: other collections merged by concept share the held-out concepts."""
    config = config or TuxPaintConfig()
    return _split_for(_unit(config.seed, "concept", concept), config)


def _split_by_concept(items: list[dict], config: TuxPaintConfig) -> list[dict]:
    out = []
    for item in items:
        split = concept_split(item["concept"], config)
        out.append({**item, "split": split})
    return out


def _modality(item: dict) -> str:
    return next(m for m in ("image", "audio", "text") if m in item)


def _split_seen(items: list[dict], config: TuxPaintConfig) -> list[dict]:
    """Hold out items of trained concepts. Per concept and modality, in a seeded order, the first
    item stays in training and the rest go to test / val / train by the configured fractions, so
    every held-out photo or sound belongs to a concept the model was adapted on. A concept's
    English label is usually its only text, so where a concept has a held-out photo or sound but
    no held-out text, a copy of its English label (id ``LABEL@SPLIT``) joins that split as the
    target: can a new photo or sound of a known concept find its known name, and each other?"""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for item in items:
        groups[item["concept"], _modality(item)].append(item)
    split_of: dict[str, str] = {}
    for group in groups.values():
        group = sorted(group, key=lambda it: _unit(config.seed, "item", it["id"]))
        split_of[group[0]["id"]] = "train"
        for item in group[1:]:
            split_of[item["id"]] = _split_for(_unit(config.seed, "seen", item["id"]), config)
    out = [{**item, "split": split_of[item["id"]]} for item in items]
    held: dict[str, set[str]] = defaultdict(set)  # split -> concepts with a held-out text
    for item in out:
        if item["split"] != "train" and "text" in item:
            held[item["split"]].add(item["concept"])
    label_of: dict[str, dict] = {}  # the concept's English label, one in training if any
    for it in sorted(out, key=lambda it: (it["split"] == "train", it["id"])):
        if "text" in it and it["meta"].get("lang", "en") == "en":
            label_of[it["concept"]] = {k: v for k, v in it.items() if k != "split"}
    copies = []
    for item in out:
        split, concept = item["split"], item["concept"]
        if split == "train" or "text" in item or concept in held[split] or concept not in label_of:
            continue
        held[split].add(concept)
        label = label_of[concept]
        copies.append({**label, "id": f"{label['id']}@{split}", "split": split})
    return out + copies


def _count(items: list[dict]) -> dict[str, Any]:
    counts: dict[str, Any] = defaultdict(lambda: defaultdict(int))
    for item in items:
        counts[item["split"]][f"{_modality(item)}:{item['meta']['kind']}"] += 1
    return {split: dict(c) for split, c in sorted(counts.items())}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def build_tuxpaint(
    out: str | os.PathLike[str],
    config: TuxPaintConfig | None = None,
    *,
    source: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TuxPaintResult:
    """Build the collection into ``out`` (written beside it and swapped in when complete)."""
    config = config or TuxPaintConfig()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to rebuild it")
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        stamps = find_stamps(Path(source) if source else None, tmp / "_package")
        builder = _Builder(stamps, tmp / "data", config)
        builder.run(progress)
        if not builder.items:
            raise ConfigError(f"{stamps}: no stamps with an English label were found")
        data = tmp / "data"
        by_concept = _split_by_concept(builder.items, config)
        seen = _split_seen(builder.items, config)
        _write_jsonl(data / "manifest.jsonl", by_concept)
        _write_jsonl(data / "manifest-seen.jsonl", seen)
        _write_jsonl(data / "spoken-digits.jsonl", builder.digits)
        info = {
            "name": "tuxpaint",
            "source": str(stamps),
            "seed": config.seed,
            "speech_langs": list(config.speech_langs),
            "text_langs": list(config.text_langs),
            "concepts": len({it["concept"] for it in builder.items}),
            "items": len(builder.items),
            "by_concept_split": _count(by_concept),
            "seen_split": _count(seen),
            "spoken_digits": len(builder.digits),
            "skipped": dict(builder.skipped),
            "skipped_examples": builder.examples,
            "licence": "GPL-2 (Debian tuxpaint-stamps-default); see the package's copyright file",
        }
        (data / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        from spaner.index.atomic_io import swap_into_place

        swap_into_place(data, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - start
    log.info(
        "tuxpaint: %d items, %d concepts in %s (%.1f s)",
        info["items"],
        info["concepts"],
        out,
        seconds,
    )
    return TuxPaintResult(out, info, dict(builder.skipped), seconds)
