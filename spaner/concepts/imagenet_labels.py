"""ImageNet class names with their WordNet synonyms and hypernyms, for the class-label vectors.

The image encoder's native vector is the probability-weighted mean of the sentence embeddings of
its top ImageNet classes (:mod:`spaner.encoders.label_space`). Embedded as bare names, the only
way from a photo to the word ``dog`` goes through breed names ("Labrador retriever"), and a
photo of a dog lands nearer "cuckoo" than "dog". Each class is a WordNet synset (ILSVRC-2012's
class index order is its sorted WordNet ids, n01440764 tench ... n15075141 toilet tissue), so its
text can carry its synonyms and its everyday hypernyms: ``"Labrador retriever, dog, domestic
dog"``.

The enriched names are derived data, written once by ``python -m spaner.concepts.imagenet_labels``
into ``encoders/configs/imagenet-classes-wordnet.txt`` and shipped: WordNet 3.0 does not change,
and the label vectors must be the same on a machine without WordNet (a checkpoint trained on them
would otherwise meet other vectors at serving time).

The ids come from timm's ``imagenet_synsets.txt`` (timm ships with open_clip); without it they are
matched from the class names (:func:`match_wnids`).
"""

from __future__ import annotations

import argparse
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .wordnet import WordNet, load_wordnet

__all__ = ["imagenet_wnids", "match_wnids", "enriched_name", "enriched_names", "OUTPUT"]

log = logging.getLogger(__name__)

OUTPUT = (
    Path(__file__).resolve().parents[2] / "encoders" / "configs" / "imagenet-classes-wordnet.txt"
)
#: hypernyms looked at, nearest first, and how many of them a class's text keeps
DEPTH, HYPERNYMS, SYNONYMS = 6, 2, 2
_BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z]+$")


def imagenet_wnids() -> list[str] | None:
    """The 1000 ILSVRC-2012 WordNet ids in class index order, as timm ships them (None without timm)."""
    try:
        text = resources.files("timm.data").joinpath("_info/imagenet_synsets.txt").read_text()
    except (ImportError, FileNotFoundError, OSError):
        return None
    ids = text.split()
    return ids if len(ids) == 1000 else None


def match_wnids(wn: WordNet, names: list[str]) -> list[str | None]:
    """WordNet ids for class names without a shipped list: the noun senses whose lemmas include the
    name, kept in increasing offset order (the class order is the sorted ids), else None."""
    out: list[str | None] = []
    last = 0
    for name in names:
        cands = sorted(s.offset() for s in wn.noun_synsets(name) if s.offset() > last)
        if cands:
            last = cands[0]
            out.append(f"n{last:08d}")
        else:
            out.append(None)
    return out


def _words(synset: Any) -> list[str]:
    return [lemma.replace("_", " ") for lemma in synset.lemma_names()]


def enriched_name(wn: WordNet, name: str, wnid: str) -> str:
    """``name`` followed by up to :data:`SYNONYMS` other lemmas of its synset and the
    :data:`HYPERNYMS` most used hypernyms (WordNet's tagged-sense counts) among the nearest
    :data:`DEPTH`, skipping WordNet's top categories (entity, object, ...)."""
    synset = wn.synset_of_wnid(wnid)
    seen = {name.lower()}
    syn = []
    for word in _words(synset):  # other names of the class, not Latin binomials (Tinca tinca)
        if word.lower() not in seen and len(syn) < SYNONYMS and not _BINOMIAL.match(word):
            syn.append(word)
            seen.add(word.lower())
    ranked: list[tuple[int, int, str]] = []
    frontier, depth = [synset], 0
    while frontier and depth < DEPTH:
        depth += 1
        frontier = [h for s in frontier for h in s.hypernyms()]
        for h in frontier:
            if h.lexname() == "noun.Tops":
                continue
            lemma = h.lemmas()[0]
            ranked.append((-wn.uses(h), depth, lemma.name()))
    hyper = []
    for _, _, word in sorted(ranked):
        word = word.replace("_", " ")
        if word.lower() not in seen and len(hyper) < HYPERNYMS:
            hyper.append(word)
            seen.add(word.lower())
    return ", ".join([name, *syn, *hyper])


def enriched_names(wn: WordNet, names: list[str], wnids: list[str | None]) -> list[str]:
    return [enriched_name(wn, n, w) if w else n for n, w in zip(names, wnids, strict=True)]


def main(argv: list[str] | None = None) -> int:
    from spaner.encoders.label_space import imagenet_classes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUTPUT)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    wn = load_wordnet()
    if wn is None:
        raise SystemExit("WordNet is unavailable (see the warning above)")
    names = imagenet_classes()
    shipped = imagenet_wnids()
    matched = match_wnids(wn, names)
    if shipped is not None:
        same = sum(a == b for a, b in zip(shipped, matched, strict=True))
        print(f"name matching finds the shipped WordNet id for {same}/1000 classes")
    wnids = shipped or matched
    lines = enriched_names(wn, names, wnids)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({sum(w is not None for w in wnids)}/1000 classes from WordNet)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
