"""WordNet 3.0 as the concept graph: synonyms, hypernyms, plurals and the sounds things make.

Read with nltk's :class:`~nltk.corpus.reader.wordnet.WordNetCorpusReader` from the files of
Debian's ``wordnet-base`` (found or fetched by :mod:`spaner.datasets.wordnet_source`). ImageNet's
classes are WordNet noun synsets (``n02099712`` = Labrador retriever), so WordNet gives every class
its synonyms and hypernyms (:mod:`spaner.concepts.imagenet_labels`), and a collection's labels
their plural and, where a gloss says so, the sound the thing makes (:mod:`spaner.concepts.phrasings`).

WordNet is optional: without nltk or the package, :func:`load_wordnet` returns ``None`` and logs
once why; callers then do without it.
"""

from __future__ import annotations

import logging
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["WordNet", "load_wordnet", "wordnet_status"]

log = logging.getLogger(__name__)

#: a noun gloss that names the sound of something: "the sound made by a dog", "the harsh sound of
#: a duck", "the characteristic sounds made by a horse", "the cry of a goose"
_SOUND_GLOSS = re.compile(
    r"\b(?:sound|sounds|noise|cry|call)\s+(?:made\s+|uttered\s+|produced\s+)?(?:by|of)\s+"
    r"(?:a|an|the)?\s*([a-z][a-z -]*?)(?=\s+(?:or|and|when|that|in|to)\b|[;,()]|$)"
)
_SOUND_LEXNAMES = frozenset({"noun.communication", "noun.attribute", "noun.act", "noun.event"})


class WordNet:
    """A thin face over nltk's reader for what SPANER asks of WordNet."""

    def __init__(self, reader: Any, root: Path) -> None:
        self.reader = reader
        self.root = Path(root)
        self.version = str(reader.get_version())
        self._plurals: dict[str, str] | None = None
        self._sounds: dict[str, list[Any]] | None = None

    def synset_of_wnid(self, wnid: str) -> Any:
        """The synset of an ImageNet id (``n02099712``: part of speech + data-file offset)."""
        return self.reader.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))

    def noun_synsets(self, word: str) -> list[Any]:
        """Noun senses of ``word`` (spaces or underscores; inflections resolved), most common first."""
        return list(self.reader.synsets(word.strip().replace(" ", "_"), "n"))

    def is_noun(self, word: str) -> bool:
        return bool(self.noun_synsets(word))

    def plural(self, noun: str) -> str:
        """The plural of ``noun``'s last word: WordNet's irregular forms (``noun.exc``: mouse ->
        mice) first, else the English spelling rules."""
        head, _, last = noun.rpartition(" ")
        if self._plurals is None:
            self._plurals = {}
            with self.reader.open("noun.exc") as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) == 2 and not parts[0].endswith("'"):
                        self._plurals.setdefault(parts[1], parts[0])
        word = self._plurals.get(last.lower()) or regular_plural(last)
        return f"{head} {word}" if head else word

    def sounds_of(self, synset: Any) -> list[Any]:
        """Noun synsets whose gloss says they are the sound of ``synset`` (or of one of its direct
        hypernyms): dog -> bark, cow -> moo, donkey (an ass) -> bray."""
        if self._sounds is None:
            self._sounds = {}
            for s in self.reader.all_synsets("n"):
                if s.lexname() in _SOUND_LEXNAMES:
                    for m in _SOUND_GLOSS.finditer(s.definition()):
                        self._sounds.setdefault(m.group(1).strip(), []).append(s)
        found: list[Any] = []
        for source in [synset, *synset.hypernyms()]:
            for lemma in source.lemma_names():
                name = lemma.replace("_", " ").lower()
                for key in (name, regular_plural(name)):
                    for s in self._sounds.get(key, []):
                        if s not in found:
                            found.append(s)
        return found

    def uses(self, synset: Any) -> int:
        """How often the synset's words were tagged in WordNet's corpus (``cntlist.rev``; 0
        when the file is missing): a measure of how everyday a word is."""
        try:
            return sum(lemma.count() for lemma in synset.lemmas())
        except OSError:
            return 0

    def verbs_for(self, noun_synset: Any) -> list[str]:
        """Verb lemmas of the same name as ``noun_synset``'s lemmas (bark.n -> bark), the form an
        event phrase needs ("a dog barking")."""
        out = []
        for lemma in noun_synset.lemma_names():
            if "_" not in lemma and self.reader.synsets(lemma, "v") and lemma not in out:
                out.append(lemma)
        return out


def regular_plural(word: str) -> str:
    """English spelling rules for a regular plural (box -> boxes, fly -> flies, dog -> dogs)."""
    w = word.lower()
    if re.search(r"(s|x|z|ch|sh)$", w):
        return word + "es"
    if re.search(r"[^aeiou]y$", w):
        return word[:-1] + "ies"
    return word + "s"


def gerund(verb: str) -> str:
    """``bark`` -> ``barking``, ``bleat`` -> ``bleating``, ``hum`` -> ``humming``, ``ring`` -> ``ringing``."""
    v = verb.lower()
    if v.endswith("ie"):
        return verb[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "oe", "ye")) and len(v) > 2:
        return verb[:-1] + "ing"
    if re.fullmatch(r"[^aeiou]*[aeiou][bdgmnprt]", v):  # one syllable, short vowel: hum, trot
        return verb + verb[-1] + "ing"
    return verb + "ing"


_UNAVAILABLE: str | None = None


@lru_cache(maxsize=1)
def load_wordnet() -> WordNet | None:
    """WordNet from Debian's ``wordnet-base`` (installed, cached, or fetched once with apt-get),
    or ``None`` when nltk or the package cannot be had; says why once (WARNING)."""
    global _UNAVAILABLE
    import os

    from spaner.datasets.wordnet_source import ENV, find_wordnet

    if os.environ.get(ENV, "").lower() in ("off", "0", "none"):
        _UNAVAILABLE = f"disabled ({ENV}={os.environ[ENV]})"
        log.info(
            "WordNet is %s: labels and phrasings use the collection's words only", _UNAVAILABLE
        )
        return None
    try:
        import nltk.data
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        _UNAVAILABLE = "unavailable: nltk is not installed (pip install nltk)"
    else:
        try:
            root = find_wordnet()
            if str(root) not in nltk.data.path:  # nltk opens files only under its data roots
                nltk.data.path.append(str(root))

            class _Reader(WordNetCorpusReader):
                def map_wn(self, version: str = "wordnet") -> None:
                    return None  # this *is* WordNet 3.0: no mapping to another version's ids

            with warnings.catch_warnings():  # "multilingual functions are not available"
                warnings.simplefilter("ignore")
                wn = WordNet(_Reader(str(root), None), root)
            log.info("WordNet %s from %s", wn.version, root)
            _UNAVAILABLE = None
            return wn
        except Exception as exc:  # a missing package, no apt-get, unreadable files
            _UNAVAILABLE = f"unavailable: {exc}"
    log.warning("WordNet is %s; labels and phrasings use the collection's words only", _UNAVAILABLE)
    return None


def wordnet_status() -> str:
    """One line for logs: which WordNet is used, or why none is."""
    wn = load_wordnet()
    return f"WordNet {wn.version} ({wn.root})" if wn is not None else f"WordNet {_UNAVAILABLE}"
