"""Queries as people make them, on Tux Paint concepts held out from training.

Trains the offline profile on the Tux Paint manifest's training concepts with the demo's schedule
and scores what a user types against concepts it never trained on: the validation concepts
(relabelled as the test split here; the manifest's own test split is left alone, so nothing is
tuned on it). Figures (R@1, one ranking over the held-out items of the target modality):

* ``label->photo`` / ``photo->label``: the English labels ("A giraffe") and the photos;
* ``bare noun->photo``: the label's bare noun ("giraffe") ranks the photos;
* ``sound phrase->sound``: a WordNet event phrase ("a lion roaring") where WordNet names the
  sound, else "the sound of a ...", ranks the recorded sounds;
* ``label->sound``.

    .venv/bin/spaner datasets tuxpaint --out /tmp/tux
    .venv/bin/python benchmarks/concept_words.py /tmp/tux/manifest.jsonl --label-text names --phrasings 0
    .venv/bin/python benchmarks/concept_words.py /tmp/tux/manifest.jsonl --label-text wordnet --phrasings 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _val_as_test(manifest: Path, out: Path) -> Path:
    lines = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item.get("split") == "test":
            continue
        if item.get("split") == "val":
            item["split"] = "test"
        lines.append(json.dumps(item))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _r1(q: np.ndarray, qc: np.ndarray, d: np.ndarray, dc: np.ndarray) -> float:
    return float(np.mean(dc[(q @ d.T).argmax(1)] == qc)) if len(q) else float("nan")


def main() -> None:
    from spaner.concepts.phrasings import _noun_phrase, phrasings
    from spaner.concepts.wordnet import load_wordnet
    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest", type=Path, help="the Tux Paint manifest.jsonl")
    p.add_argument("--label-text", default="wordnet", choices=["names", "wordnet"])
    p.add_argument("--phrasings", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shots", type=int, default=5)
    args = p.parse_args()
    # beside the original: its media paths are relative to the manifest's folder
    manifest = _val_as_test(args.manifest, args.manifest.with_name("manifest-heldout-val.jsonl"))
    sp = Spaner.from_profile("offline", options={"image": {"label_text": args.label_text}})
    cfg = sp.train_config(
        shots=args.shots, epochs=60, keep="last", val_every=60, batch_size=512,
        audio_augment=1, workers=2, phrasings=args.phrasings, seed=args.seed,
    )  # fmt: skip
    t = time.time()
    data = sp.prepare(manifest, cfg, FeatureCache())
    sp.fit(data, cfg, progress=False)
    test = data.splits.test
    imgs = [i for i in test if "image" in i.fields]
    snds = [i for i in test if "audio" in i.fields and i.meta.get("kind") == "sound"]
    texts = [i for i in test if "text" in i.fields and i.meta.get("lang", "en") == "en"]
    vi = sp.embed("image", [i.fields["image"] for i in imgs])
    vs = sp.embed("audio", [i.fields["audio"] for i in snds])
    vt = sp.embed("text", [i.fields["text"] for i in texts])
    ci, cs = np.array([i.concept for i in imgs]), np.array([i.concept for i in snds])
    ct = np.array([i.concept for i in texts])
    label = {i.concept: i.fields["text"] for i in texts}
    bare = {c: _noun_phrase(t)[0] for c, t in label.items()}
    bc = np.array([c for c in bare if c in set(ci)])
    wn = load_wordnet()
    sc, queries = [c for c in label if c in set(cs)], []
    for c in sc:
        events = [
            t for t in phrasings(label[c], ["audio"], wn) if " " in t and _is_event(t, bare[c])
        ]
        queries.append(events[0] if events else f"the sound of {_noun_phrase(label[c])[1]}")
    with_img, with_snd = np.isin(ct, ci), np.isin(ct, cs)
    out = {
        "label_text": args.label_text,
        "phrasings": args.phrasings,
        "seed": args.seed,
        "train_text_items": len(data.train.modalities["text"]),
        "label->photo R@1": _r1(vt[with_img], ct[with_img], vi, ci),
        "photo->label R@1": _r1(vi, ci, vt, ct),
        "bare noun->photo R@1": _r1(sp.embed("text", [bare[c] for c in bc]), bc, vi, ci),
        "bare noun queries": len(bc),
        "sound phrase->sound R@1": _r1(sp.embed("text", queries), np.array(sc), vs, cs),
        "sound phrases": dict(zip(sc, queries, strict=True)),
        "label->sound R@1": _r1(vt[with_snd], ct[with_snd], vs, cs),
        "seconds": round(time.time() - t),
    }
    print(json.dumps(out))


def _is_event(text: str, bare: str) -> bool:
    """An event phrase ("a lion roaring"), not a template or the plural."""
    return (
        not text.startswith(("a photo", "a picture", "a recording", "the sound", "the "))
        and (text.endswith("ing") or text.split()[1:2] != bare.split()[:1])
        and text not in (bare,)
        and len(text.split()) > len(bare.split()) + 1
    )


if __name__ == "__main__":
    main()
