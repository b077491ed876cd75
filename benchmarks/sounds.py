"""Environmental sounds by meaning: Tux Paint's recorded sounds and more named recordings from
Debian packages (:mod:`spaner.datasets.sound_packages`), ranked against class names.

    .venv/bin/python benchmarks/sounds.py [--json] [--quick] [--split val]

Recordings: Tux Paint's stamp sounds that are not speech (letters, digits, feelings, dreidel
and road-sign announcements are left out), plus the sound-packages collection merged by concept:

| package | licence |
|---|---|
| ``tuxpaint-stamps-default`` | GPL-2 |
| ``gcompris-qt-data`` | GPL-3+; Free Art License (the memory-game ``*_LA.ogg`` recordings) |
| ``openttd-opensfx`` | CC-BY-SA-3.0 (single sounds CC-BY-3.0 or CC0) |
| ``sound-icons`` | GPL-2+ |
| ``sound-theme-freedesktop`` | CC-BY-3.0, CC-BY-SA-3.0, GPL-2+ (per file) |

Protocols, each with SPANER (cross-attention aligner) and the linear adapter trained side by
side on the same features, splits and seeds:

* ``held-out``: the model is adapted as the demo adapts (:data:`spaner.demo.TRAIN`) on the Tux
  Paint by-concept training split, then each clip of a held-out concept (test concepts; val with
  ``--split val``, the test items never loaded) ranks the held-out class names (the Tux Paint
  English label where the collection has the concept, else the class name): zero-shot
  audio->text, as the served model would rank them.
* ``few-shot K``: classes with recordings of at least two originals; per class and seed,
  ``min(K, originals - 1)`` originals are the shots (one clip each), the clips of the other
  originals are the queries (edits of one recording never on both sides). A fresh audio + text
  model is adapted on the shots and the class names with the demo's schedule; each query ranks
  every class name. K = 1 and 5, 3 seeds (1 with ``--quick``).

Per protocol: R@1, R@5, mean per-class recall, the top confusions and the **swallow share**
(:mod:`spaner.evaluation.class_metrics`; target <= .10). Audio-encoder variants are compared
with ``--audio-encoder``/``--audio-options``/``--audio-augment``, and augmentation recipes
(:mod:`spaner.training.audio_augment`) with ``--audio-recipe``/``--audio-recipe-options``, on
``--split val`` only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from queries import METHODS, _tuxpaint  # noqa: E402

log = logging.getLogger("sounds")

#: Tux Paint stamp folders whose sounds are people speaking, not the thing's sound
SPEECH_FOLDERS = ("symbols", "town/roadsigns", "seasonal/hanukkah", "military")
SHOTS = (1, 5)


def environmental(row: dict[str, Any]) -> bool:
    """A Tux Paint manifest row that is a recorded sound of the thing, not speech."""
    meta = row.get("meta", {})
    if "audio" not in row or meta.get("kind") != "sound":
        return False
    category = str(meta.get("category", ""))
    return not category.startswith(SPEECH_FOLDERS) and len(row["concept"].split()) <= 5


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    for r in rows:  # absolute media paths: derived manifests are written elsewhere
        for m in ("audio", "image"):
            if m in r:
                r[m] = str((path.parent / r[m]).resolve())
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A manifest of ``rows`` (absolute media paths) at ``path``, its media paths made relative
    to it (every medium lies under the work folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    lines = []
    for r in rows:
        r = {**r, **{m: os.path.relpath(r[m], root) for m in ("audio", "image") if m in r}}
        lines.append(json.dumps(r, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), "utf-8")
    return path


def collect(tux: Path, packages: Path) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(Tux Paint rows, every environmental clip row with ``meta.group``, {concept: label})."""
    from spaner.datasets.tuxpaint import concept_split

    trows = _rows(tux)
    label = {
        r["concept"]: r["text"]
        for r in sorted(trows, key=lambda r: r["id"], reverse=True)
        if "text" in r and r["meta"].get("lang", "en") == "en"
    }
    clips = []
    for r in trows:
        if environmental(r):
            clips.append({**r, "meta": {**r["meta"], "group": r["id"], "package": "tuxpaint"}})
    for r in _rows(packages):
        if "audio" in r:
            clips.append({**r, "split": concept_split(r["concept"])})
        else:
            label.setdefault(r["concept"], r["text"])
    return trows, clips, label


def _class_scores(sp: Any, clips: list[dict], names: list[str], texts: list[str], cache: Any):
    from spaner.model.embedding import embed_items
    from spaner.training.features import encode_items

    toks = encode_items(sp.encoders["audio"], [c["audio"] for c in clips], cache)
    za = embed_items(sp.model, "audio", toks).float().numpy()
    zt = sp.embed("text", texts)
    true = [names.index(c["concept"]) for c in clips]
    return za @ zt.T, true


def _train(method: str, manifest: Path, train: dict, opts: dict, cache: Any, mods=None):
    """A model of the offline profile (``opts``: ``encoders`` and ``options`` overrides)
    adapted with ``method`` on ``manifest``."""
    import torch

    from spaner.pipeline import Spaner

    sp = Spaner.from_profile("offline", modalities=mods, aligner=METHODS[method], **opts)
    cfg = sp.train_config(**train)
    data = sp.prepare(manifest, cfg, cache)
    torch.manual_seed(cfg.seed)
    sp.fit(data, cfg, progress=False)
    return sp


def held_out(trows, clips, label, split, args, train, opts, cache, work) -> list[dict]:
    """The held-out protocol (module doc): one row per method."""
    from spaner.evaluation.class_metrics import class_report

    manifest = _write(work / "held-out-train.jsonl", [r for r in trows if r["split"] != "test"])
    scored = [c for c in clips if c["split"] == split]
    names = sorted({c["concept"] for c in scored})
    texts = [label[c] for c in names]
    rows = []
    for method in args.methods:
        t = time.perf_counter()
        sp = _train(method, manifest, {**train, "shots": 5}, opts, cache)
        scores, true = _class_scores(sp, scored, names, texts, cache)
        rep = class_report(scores, true, names)
        rows.append(
            {"protocol": "held-out", "K": None, "method": method, "seeds": [train["seed"]],
             "seconds": round(time.perf_counter() - t, 1), **rep}
        )  # fmt: skip
    return rows


def few_shot_split(
    clips: list[dict], k: int, seed: int
) -> tuple[list[dict], list[dict], list[str]]:
    """(shots, queries, classes) for one K and seed (see the module doc)."""
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for c in sorted(clips, key=lambda c: c["id"]):
        groups[c["concept"]][c["meta"]["group"]].append(c)
    rng = random.Random(seed)
    shots, queries, classes = [], [], []
    for concept in sorted(groups):
        originals = sorted(groups[concept])
        if len(originals) < 2:
            continue
        rng.shuffle(originals)
        n = min(k, len(originals) - 1)
        shots += [groups[concept][g][0] for g in originals[:n]]
        queries += [c for g in originals[n:] for c in groups[concept][g]]
        classes.append(concept)
    return shots, queries, classes


def few_shot(clips, label, args, train, opts, cache, work) -> list[dict]:
    """The few-shot protocol (module doc): one row per K and method, means over seeds."""
    from spaner.evaluation.class_metrics import class_report

    rows = []
    for k in SHOTS:
        per: dict[str, list[dict]] = defaultdict(list)
        for seed in args.seeds:
            shots, queries, names = few_shot_split(clips, k, seed)
            texts = [label[c] for c in names]
            lines = [{**s, "split": "train"} for s in shots]
            lines += [{"id": f"text.{c}", "concept": c, "text": label[c], "split": "train"} for c in names]  # fmt: skip
            lines += [{**x, "id": f"{x['id']}@val", "split": "val"} for x in lines]
            manifest = _write(work / f"few-shot-k{k}-s{seed}.jsonl", lines)
            for method in args.methods:
                t = time.perf_counter()
                cfg = {**train, "seed": seed, "shots": None}
                sp = _train(method, manifest, cfg, opts, cache, ["text", "audio"])
                scores, true = _class_scores(sp, queries, names, texts, cache)
                per[method].append(
                    {**class_report(scores, true, names), "seconds": time.perf_counter() - t,
                     "shots": len(shots)}
                )  # fmt: skip
        for method, reps in per.items():
            row = {"protocol": f"few-shot K={k}", "K": k, "method": method, "seeds": args.seeds}
            for key in ("R@1", "R@5", "mean_class_recall", "swallow_share", "seconds", "shots"):
                row[key] = round(float(np.mean([r[key] for r in reps])), 4)
            row.update({k_: reps[0][k_] for k_ in ("queries", "classes")})
            row["seed0"] = {k_: reps[0][k_] for k_ in ("per_class_recall", "confusions",
                                                      "swallow_class", "swallowers")}  # fmt: skip
            rows.append(row)
    return rows


def _recipe(name: str, options: str | None) -> str:
    """The name of audio recipe ``name`` with the JSON ``options`` over its fields (registered
    under a name of its own)."""
    import dataclasses

    from spaner.training.audio_augment import get_audio_recipe, recipe_key, register_audio_recipe

    if not options:
        get_audio_recipe(name)
        return name
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(options).items()}
    recipe = dataclasses.replace(get_audio_recipe(name), **fields)
    variant = f"{name}+{recipe_key(recipe)}"
    register_audio_recipe(variant, recipe)
    return variant


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "| protocol | method | clips | classes | R@1 | R@5 | mean class recall | swallow share (class) |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        who = r.get("swallow_class") or r.get("seed0", {}).get("swallow_class")
        lines.append(
            f"| {r['protocol']} | {r['method']} | {r['queries']} | {r['classes']} | "
            f"{r['R@1']:.3f} | {r['R@5']:.3f} | {r['mean_class_recall']:.3f} | "
            f"{r['swallow_share']:.3f} ({who}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", action="store_true", help="last stdout line: the report as JSON")
    ap.add_argument("--quick", action="store_true", help="6 epochs, one seed")
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--protocols", default="held-out,few-shot")
    ap.add_argument("--methods", default="spaner,linear", type=lambda s: s.split(","))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--audio-encoder", default=None, help="another registered audio encoder")
    ap.add_argument("--audio-options", default="{}", help="JSON options of the audio encoder")
    ap.add_argument("--audio-augment", type=int, default=None, help="augmented copies per clip")
    ap.add_argument("--audio-recipe", default=None, help="a registered audio recipe")
    ap.add_argument(
        "--audio-recipe-options",
        default=None,
        help="JSON fields over --audio-recipe (default: speech), e.g. '{\"mix_p\": 0.5}'",
    )
    ap.add_argument("--workdir", type=Path, default=Path(".spaner-cache/sounds-bench"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from spaner.datasets.sound_packages import build_sound_packages
    from spaner.demo import TRAIN
    from spaner.model.shared_encoders import shared_encoders
    from spaner.training.features import FeatureCache

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    args.seeds = list(range(1 if args.quick else args.seeds))
    train = {"seed": 0, **TRAIN["tuxpaint"]}
    if args.quick:
        train["epochs"] = train["val_every"] = 6
    if args.audio_augment is not None:
        train["audio_augment"] = args.audio_augment
    if args.audio_recipe or args.audio_recipe_options:
        train["audio_recipe"] = _recipe(args.audio_recipe or "speech", args.audio_recipe_options)
    opts: dict[str, Any] = {"options": {"audio": json.loads(args.audio_options)}}
    if args.audio_encoder:
        opts["encoders"] = {"audio": args.audio_encoder}
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache()
    with shared_encoders():
        tux, _ = _tuxpaint(args.workdir, "test")
        packages = args.workdir / "sound-packages"
        if not (packages / "manifest.jsonl").is_file():
            build_sound_packages(packages, overwrite=packages.exists())
        trows, clips, label = collect(tux, packages / "manifest.jsonl")
        if args.split == "val":  # the test items are never loaded
            trows = [r for r in trows if r["split"] != "test"]
            clips = [c for c in clips if c["split"] != "test"]
        results: list[dict] = []
        protocols = args.protocols.split(",")
        if "held-out" in protocols:
            results += held_out(trows, clips, label, args.split, args, train, opts, cache, args.workdir)  # fmt: skip
        if "few-shot" in protocols:
            results += few_shot(clips, label, args, train, opts, cache, args.workdir)
    by_source: dict[str, int] = defaultdict(int)
    for c in clips:
        by_source[c["meta"]["package"]] += 1
    report = {
        "benchmark": "sounds",
        "cpu": cpu_model(),
        "split": args.split,
        "quick": args.quick,
        "clips": dict(by_source),
        "audio_encoder": args.audio_encoder or "whisper-tiny-en-audio",
        "audio_options": json.loads(args.audio_options),
        "audio_recipe_options": json.loads(args.audio_recipe_options or "{}"),
        "train": train,
        "results": results,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"machine: {report['cpu']}; split: {args.split}; {report['seconds']:.0f} s")
    print(format_table(report))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
