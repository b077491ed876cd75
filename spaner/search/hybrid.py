"""Hybrid ranking: the store's full-text (lexical) evidence fused with the vector ranking.

The vector space ranks by meaning but does not know that a query typed word for word is a
stored text; the full-text index (:meth:`spaner.index.VectorStore.lexical_search`, BM25 over
the text items and the transcripts of spoken audio) does. Each candidate of a target modality
gets a **lexical evidence** ``p`` in [0, 1]:

* ``1`` when the query *is* the item's text (:func:`spaner.search.speech_bias.normalise`:
  case, punctuation, a leading article and numerals folded, so ``frog`` is "A frog" and
  ``2`` is "Two");
* else :data:`LEXICAL_WEIGHT` times the share of the query's words the text holds (Porter
  stems, as the index reads them), for items the index found;
* ``0`` for items without matching text.

With a calibration (every trained model has one), the calibrated vector relevance ``r`` and
``p`` combine as independent evidence, ``1 - (1 - r)(1 - p)``, ranked by its logit: a vector
match is never lowered, an exact text match comes first, and the result stays comparable
across modalities, so the one-list ranking fuses too. Without a calibration, lists are fused
by reciprocal rank (:data:`RRF_K`). :data:`LEXICAL_WEIGHT` was swept on the Tux Paint validation concepts
(``benchmarks/queries.py --split val --lexical-weight 0,0.25,0.5,1``, never the test ones): no
query family moved by more than one query between 0 and 1 (exact matches and the vectors
decide), so the default stays 0.5.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spaner.search.numbers import numerals_to_words, words_to_numerals
from spaner.search.speech_bias import normalise

__all__ = [
    "LEXICAL_WEIGHT",
    "RRF_K",
    "Scored",
    "lexical_evidence",
    "lexical_hits",
    "fuse",
    "pooled_rrf",
]

log = logging.getLogger(__name__)

#: the lexical evidence of a text holding every query word without being the query itself
LEXICAL_WEIGHT = 0.5
#: reciprocal-rank fusion's constant (the usual 60) for models without a calibration
RRF_K = 60
#: an exact match's evidence, below 1 so that logits stay finite
_EXACT = 1.0 - 1e-9
#: exact matches rank as a tier of their own above every other candidate (by their vector
#: logit within it): no vector score, however high, outranks the text the user typed
_EXACT_TIER = 1e6


@dataclass
class Scored:
    """A candidate of one target modality: its raw cosine, its calibrated relevance (None
    without a calibration), its lexical evidence and the key it is ranked by (higher first)."""

    id: int
    cosine: float
    relevance: float | None
    lexical: float | None
    key: float
    metadata: Mapping[str, Any]


def _stemmer() -> Any:
    try:
        from nltk.stem.porter import PorterStemmer

        return PorterStemmer(PorterStemmer.ORIGINAL_ALGORITHM).stem
    except ImportError:  # nltk is a dependency; without it, plural -s is the only stem
        return lambda w: w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


_stem = _stemmer()


@functools.lru_cache(maxsize=1024)
def _terms(text: str) -> frozenset[str]:
    """The stemmed search words of ``text`` (cached: one query is read against every candidate)."""
    from spaner.index.lexical import query_terms

    return frozenset(_stem(t) for t in query_terms(text))


def lexical_evidence(query: str, text: str) -> float:
    """``p`` of the module doc for one item text (0 when it holds none of the query's words)."""
    if not query or not text:
        return 0.0
    folded = normalise(query)
    if folded and folded == normalise(text):
        return _EXACT
    q = _terms(query)
    if not q:
        return 0.0
    return LEXICAL_WEIGHT * len(q & _terms(text)) / len(q)


def lexical_hits(
    store: Any, text: str, targets: Sequence[str], k: int, filters: Any = None
) -> dict[str, list[tuple[int, float]]]:
    """The full-text index's top ``k`` ``(id, bm25)`` of each target modality; ``{}`` when
    there is no query text or the store has no full-text index."""
    if not text or not hasattr(store, "lexical_search"):
        return {}
    text = with_number_forms(text)
    out: dict[str, list[tuple[int, float]]] = {}
    for m in targets:
        try:
            out[m] = list(store.lexical_search(text, k, modalities=m, filters=filters))
        except NotImplementedError as exc:
            log.debug("no lexical channel: %s", exc)
            return {}
    return out


def with_number_forms(text: str) -> str:
    """``text`` with its numbers in the other form too ("7" also as "seven", "seven" also as
    "7"), so the full-text index finds "Seven" for a typed or transcribed "7"."""
    forms = [text, numerals_to_words(text), words_to_numerals(text)]
    return "\n".join(dict.fromkeys(f for f in forms if f))


def _item_text(store: Any, meta: Mapping[str, Any], item_id: int) -> str:
    """The text the index holds for an item: a text item's content, a transcript."""
    parts = []
    if meta.get("modality") == "text":
        content = store.content(item_id)
        parts.append(content if isinstance(content, str) else content.decode("utf-8", "replace"))
    extra = meta.get("extra") or {}
    if isinstance(extra.get("transcript"), str):
        parts.append(extra["transcript"])
    return "\n".join(parts)


def _fused_key(vector_logit: float, p: float) -> float:
    """logit of ``1 - (1 - sigmoid(vector_logit))(1 - p)``, computed without overflow."""
    if p <= 0.0:
        return vector_logit
    if p >= _EXACT:
        return _EXACT_TIER + vector_logit
    log_miss = -math.log1p(math.exp(-abs(vector_logit))) - max(vector_logit, 0.0) + math.log1p(-p)
    miss = math.exp(log_miss)  # (1 - r)(1 - p)
    return math.log1p(-miss) - log_miss if miss < 1.0 else -1e9


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def fuse(
    store: Any,
    query_vector: np.ndarray,
    query_text: str,
    per_target: Mapping[str, Sequence[Any]],
    lexical: Mapping[str, Sequence[tuple[int, float]]],
    calibration: Any,
    weights: Mapping[str, float],
) -> dict[str, list[Scored]]:
    """Each target modality's candidates (vector hits ∪ lexical hits), scored and sorted by
    their key, best first. Without ``lexical`` evidence the keys are the vector ranking's own
    (calibrated logit, or cosine without a calibration)."""
    calibrated = calibration is not None and bool(weights)
    out: dict[str, list[Scored]] = {}
    for m, hits in per_target.items():
        metas = {int(h.id): h.metadata for h in hits}
        cos = {int(h.id): float(h.score) for h in hits}
        extra_ids = [int(i) for i, _ in lexical.get(m, []) if int(i) not in metas]
        if extra_ids:
            for i, meta in zip(extra_ids, store.get(extra_ids), strict=True):
                metas[i] = {k: v for k, v in meta.items() if k != "id"}
            vecs = store.vectors(extra_ids)
            for i, c in zip(extra_ids, vecs @ query_vector.reshape(-1), strict=True):
                cos[i] = float(c)
        ids = list(metas)
        lex_ids = {int(i) for i, _ in lexical.get(m, [])}
        p = {
            i: lexical_evidence(query_text, _item_text(store, metas[i], i)) if i in lex_ids else 0.0
            for i in ids
        }
        arr = np.array([cos[i] for i in ids], dtype=np.float64)
        if calibrated:
            logits = calibration.logit(dict(weights), m, arr) if len(ids) else arr
            rel = calibration.relevance(dict(weights), m, arr) if len(ids) else arr
            scored = []
            for j, i in enumerate(ids):
                key = _fused_key(float(logits[j]), p[i])
                r = float(rel[j]) if p[i] <= 0 else _sigmoid(key)
                scored.append(Scored(i, cos[i], r, p[i] or None, key, metas[i]))
        else:
            vec_rank = {i: r for r, i in enumerate(sorted(ids, key=lambda i: -cos[i]))}
            lex_rank = {int(i): r for r, (i, _) in enumerate(lexical.get(m, []))}
            scored = [
                Scored(
                    i,
                    cos[i],
                    None,
                    p[i] or None,
                    _rrf(vec_rank[i], lex_rank.get(i), p[i]) if lexical else cos[i],
                    metas[i],
                )
                for i in ids
            ]
        order = sorted(range(len(scored)), key=lambda j: (-scored[j].key, j))
        out[m] = [scored[j] for j in order]
    return out


def _rrf(vector_rank: int, lexical_rank: int | None, evidence: float | None) -> float:
    score = 1.0 / (RRF_K + vector_rank + 1)
    if lexical_rank is not None:
        score += 1.0 / (RRF_K + lexical_rank + 1)
    return score + (_EXACT_TIER if (evidence or 0.0) >= _EXACT else 0.0)


def pooled_rrf(per_target: Mapping[str, Sequence[Scored]]) -> dict[int, float]:
    """Keys of the one-list ranking without a calibration: reciprocal rank over the pooled
    cosine order and the pooled lexical order."""
    pool = [s for hits in per_target.values() for s in hits]
    by_cos = sorted(pool, key=lambda s: -s.cosine)
    by_lex = sorted((s for s in pool if s.lexical), key=lambda s: -(s.lexical or 0.0))
    lex_rank = {s.id: r for r, s in enumerate(by_lex)}
    return {s.id: _rrf(r, lex_rank.get(s.id), s.lexical) for r, s in enumerate(by_cos)}
