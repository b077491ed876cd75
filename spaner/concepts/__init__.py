"""The concept graph and the words for concepts: WordNet 3.0 (Debian's ``wordnet-base``, read by
nltk), ImageNet class texts derived from it, and phrasings of a collection's labels for training."""

from __future__ import annotations

from .phrasings import article, concept_phrasings, phrasings
from .wordnet import WordNet, load_wordnet, wordnet_status

__all__ = [
    "WordNet",
    "load_wordnet",
    "wordnet_status",
    "phrasings",
    "concept_phrasings",
    "article",
]
