"""Many phrasings per concept: the words people type, generated from a collection's own labels.

A collection labels each concept once ("A frog."), and a model adapted on that one phrasing meets
"frog", "frogs", "a photo of a frog" or "a dog barking" at search time. :func:`phrasings` writes,
for one concept, from its label and (when available) WordNet:

* the bare noun, with an article, and the plural (WordNet's irregular plurals; only for a label
  whose last word WordNet knows as a noun);
* modality templates for what the concept has in the collection: "a photo of a frog", "a picture
  of ..." for images, "the sound of a frog", "a recording of ..." for sounds;
* event phrases for a sound, only when WordNet says what sound the thing makes (a noun gloss
  "the sound made by a dog" -> bark -> "a dog barking", "the bark of a dog", "a barking dog").

Training adds them as extra text items of the concept (``TrainConfig.phrasings``,
:func:`spaner.training.augment.add_phrasings`); nothing is hand-written per concept, and only training concepts get any.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from .wordnet import WordNet, gerund

__all__ = ["phrasings", "concept_phrasings", "article"]

log = logging.getLogger(__name__)

_ARTICLE = re.compile(r"^(a|an|the|some)\s+", re.IGNORECASE)
_TEMPLATES = {
    "image": ("a photo of {a}", "a picture of {a}"),
    "audio": ("the sound of {a}", "a recording of {a}"),
}


def article(noun: str) -> str:
    """``noun`` with ``a``/``an`` by its first letter."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _noun_phrase(label: str) -> tuple[str, str]:
    """``"A frog."`` -> ``("frog", "a frog")``: the bare noun phrase and the label's own article
    (else one chosen by spelling); a parenthesis is left out ("baby sheep (a lamb)")."""
    text = re.sub(r"\s*\(.*?\)", "", label).strip().rstrip(".!?").strip()
    m = _ARTICLE.match(text)
    bare = _ARTICLE.sub("", text).strip()
    if bare[:1].isupper() and not bare[1:2].isupper():
        bare = bare[0].lower() + bare[1:]
    with_article = f"{m.group(1).lower()} {bare}" if m else article(bare)
    return bare, with_article


def _synset_for(wn: WordNet, noun: str, category: str | None) -> Any | None:
    """The noun sense of ``noun`` (or of its last word) that fits the collection's category path
    best ("household/tools" picks the hand tool hammer, not a gun's hammer); the most common
    sense when nothing fits."""
    senses = wn.noun_synsets(noun) or wn.noun_synsets(noun.rsplit(" ", 1)[-1])
    if not senses or category is None:
        return senses[0] if senses else None
    words = {w.rstrip("s") for w in re.split(r"[/_\- ]+", category.lower()) if w}

    def fit(s: Any) -> int:
        names = {n.lower() for h in s.closure(lambda x: x.hypernyms()) for n in h.lemma_names()}
        return len({n.rstrip("s") for n in names} & words)

    return max(senses[:4], key=fit)


def phrasings(
    label: str,
    modalities: Sequence[str] = (),
    wn: WordNet | None = None,
    category: str | None = None,
) -> list[str]:
    """Phrasings of one concept's English ``label``, most useful first, without duplicates; see
    the module docstring. ``modalities``: those the concept has ("image", "audio")."""
    bare, with_article = _noun_phrase(label)
    if not bare or len(bare.split()) > 5:  # a sentence, not a name: only the label itself
        return []
    if not _ARTICLE.match(label.strip()) and (wn is None or not wn.is_noun(bare)):
        with_article = bare  # "Sad!", "Quarter rest": no article the label does not have
    out = [bare, with_article]
    events: list[str] = []
    plural = None
    if wn is not None and re.fullmatch(r"[a-z][a-z' -]*", bare):
        if wn.is_noun(bare.rsplit(" ", 1)[-1]):
            plural = wn.plural(bare)
        synset = _synset_for(wn, bare, category) if "audio" in modalities else None
        if synset is not None:
            for sound in wn.sounds_of(synset)[:2]:
                for verb in wn.verbs_for(sound)[:1]:
                    events += [
                        f"{with_article} {gerund(verb)}",
                        f"the {verb} of {with_article}",
                        f"{article(gerund(verb))} {bare}",
                    ]
                    if plural:
                        events.append(f"{plural} {gerund(verb)}")
    out += events[:2]
    for modality in ("image", "audio"):
        if modality in modalities:
            out.append(_TEMPLATES[modality][0].format(a=with_article))
    if plural:
        out.append(plural)
    out += events[2:]
    for modality in ("image", "audio"):
        if modality in modalities:
            out += [t.format(a=with_article) for t in _TEMPLATES[modality][1:]]
    seen: set[str] = {label.strip().rstrip(".!?").lower()}
    unique = []
    for text in out:
        if text.lower() not in seen:
            seen.add(text.lower())
            unique.append(text)
    return unique


def concept_phrasings(
    items: Sequence[Any], per_concept: int, wn: WordNet | None = None
) -> dict[str, list[str]]:
    """Up to ``per_concept`` phrasings for each concept of manifest ``items`` that has an English
    text label (``meta.lang`` absent or ``en``), from that label, the concept's modalities and its
    ``meta.category``."""
    labels: dict[str, str] = {}
    mods: Mapping[str, set[str]] = defaultdict(set)
    category: dict[str, str] = {}
    for item in items:
        if item.concept is None:
            continue
        mods[item.concept].update(item.fields)
        if "category" in item.meta:
            category.setdefault(item.concept, str(item.meta["category"]))
        if "text" in item.fields and item.meta.get("lang", "en") == "en":
            labels.setdefault(item.concept, item.fields["text"])
    return {
        concept: phrasings(label, sorted(mods[concept]), wn, category.get(concept))[:per_concept]
        for concept, label in sorted(labels.items())
    }
