"""The collection's vocabulary for biasing spoken queries: the store's text items and concept
names (:mod:`spaner.search.speech_bias`), rebuilt only when the store's generation moves."""

from __future__ import annotations

import logging
import threading
from typing import Any

from spaner.index import Filter

from spaner.search.speech_bias import Vocabulary

__all__ = ["store_vocabulary", "MAX_VOCABULARY"]

log = logging.getLogger(__name__)

#: at most this many store texts and concept names are read into the vocabulary
MAX_VOCABULARY = 20000

_cache: dict[int, tuple[Any, Vocabulary]] = {}
_lock = threading.Lock()


def _texts(store: Any) -> list[str]:
    ids = store.ids(Filter(modality="text"))
    out: list[str] = []
    for i in ids[:MAX_VOCABULARY]:
        content = store.content(int(i))
        if isinstance(content, str):
            out.append(content)
    if len(ids) > MAX_VOCABULARY:
        log.warning("spoken-query vocabulary: only the first %d store texts", MAX_VOCABULARY)
    return out


def store_vocabulary(store: Any) -> Vocabulary:
    """The words of ``store`` a spoken query's transcript may be snapped to: its short text
    items and its concept names (a concept "frog" is a word users say)."""
    stats = store.stats()
    key = (stats.get("path"), stats.get("generation"), stats.get("count"))
    with _lock:
        hit = _cache.get(id(store))
        if hit is not None and hit[0] == key:
            return hit[1]
    concepts = [str(c) for c in (stats.get("by_concept") or {}) if c]
    vocab = Vocabulary.build(_texts(store) + concepts[:MAX_VOCABULARY])
    with _lock:
        _cache[id(store)] = (key, vocab)
    return vocab
