"""Contextual biasing: a spoken query's transcript snapped to the collection's own words.

Whisper tiny.en mishears isolated words ("Mark!" for *lark*, "to Ken." for *toucan*), yet the
words a user can usefully say are known at search time: the store's text items and concept
names. Biasing re-reads the clip against them:

1. Whisper's n-best hypotheses (beam search) are the free transcripts;
2. the vocabulary entries nearest to any hypothesis in spelling (difflib's ratio on normalised
   forms: lowercase, no punctuation, no leading article, numbers 0-99 as words; an entry is
   compared whole and by its last word, so "Ten." proposes "a brown hen") are the candidates;
3. Whisper scores each candidate as the transcript of the clip (teacher-forced mean token
   log-probability, :meth:`WhisperEncoder.text_logprobs`), in the form the user said it
   ("Lark.", or "A lark." when Whisper heard an article), against the top hypothesis scored
   the same way (a top hypothesis that already *is* an entry, once normalised, is taken as that
   entry unscored: it saves Whisper's scoring, ~1.6 s of a spoken query on 2 cores);
4. the best candidate replaces the transcript when its score is within ``slack`` of the free
   transcript's: the clip is at most a little less likely to be the collection's word than
   what Whisper heard on its own. With a larger ``slack`` the nearest in-vocabulary word
   always wins; with none only a candidate Whisper itself prefers does.

``slack`` and the candidate count are chosen on the Tux Paint train+val English spoken
descriptions (``studies/spoken_bias_choice.py``; README, "Spoken queries"): the best
speech->image R@1, ties broken by how rarely a query whose word is *not* in the vocabulary
gets snapped to another entry.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spaner.search.numbers import numerals_to_words

__all__ = [
    "BIAS_SLACK",
    "BIAS_CANDIDATES",
    "Vocabulary",
    "BiasedTranscript",
    "normalise",
    "bias_transcript",
]

log = logging.getLogger(__name__)

#: how much less likely (mean log-probability per token) the collection's word may be than
#: Whisper's own transcript and still replace it (chosen by cross-validation, module doc)
BIAS_SLACK = 3.0
#: vocabulary entries nearest in spelling that Whisper scores per query
BIAS_CANDIDATES = 16
#: store texts longer than this are descriptions, not words a user says as a query
MAX_ENTRY_WORDS = 6

_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_NON_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)


def normalise(text: str) -> str:
    """Lowercase words without punctuation or a leading article, numbers 0-99 as words ("2." and
    "Two" are both "two", "21" is "twenty one"; :mod:`spaner.search.numbers`)."""
    t = _NON_WORD.sub(" ", numerals_to_words(text).lower())
    t = " ".join(t.split())
    return _ARTICLE.sub("", t)


def _spoken(form: str) -> str:
    """How Whisper writes a short utterance: capitalised, with a full stop."""
    return " " + form[:1].upper() + form[1:] + "."


@dataclass
class Vocabulary:
    """The words of a collection a spoken query may be snapped to (deduplicated by form)."""

    entries: list[str] = field(default_factory=list)  # as the store has them
    forms: list[str] = field(default_factory=list)  # normalised

    @classmethod
    def build(cls, texts: Iterable[str], max_words: int = MAX_ENTRY_WORDS) -> Vocabulary:
        vocab = cls()
        seen: set[str] = set()
        for text in texts:
            if not isinstance(text, str):
                continue
            form = normalise(text)
            if not form or len(form.split()) > max_words or form in seen:
                continue
            seen.add(form)
            vocab.entries.append(text.strip())
            vocab.forms.append(form)
        return vocab

    def __len__(self) -> int:
        return len(self.entries)

    def nearest(self, heard: Sequence[str], k: int) -> list[int]:
        """Indices of the ``k`` entries nearest in spelling to any of the ``heard`` texts."""
        said = [h for h in dict.fromkeys(normalise(x) for x in heard) if h]
        if not said or not self.entries:
            return []
        best = np.zeros(len(self.forms))
        for h in said:
            m = difflib.SequenceMatcher(autojunk=False)
            m.set_seq2(h)
            for i, form in enumerate(self.forms):
                for f in {form, form.rsplit(" ", 1)[-1]}:
                    m.set_seq1(f)
                    if m.real_quick_ratio() > best[i] and m.quick_ratio() > best[i]:
                        best[i] = max(best[i], m.ratio())
        order = np.argsort(-best, kind="stable")[:k]
        return [int(i) for i in order if best[i] > 0]


@dataclass
class BiasedTranscript:
    """What Whisper heard, and the vocabulary entry the transcript was snapped to (if any)."""

    heard: str
    text: str
    entry: str | None
    margin: float | None  # entry's score minus the free transcript's (mean log-prob per token)


def _said_article(heard: str) -> bool:
    return bool(_ARTICLE.match(" ".join(_NON_WORD.sub(" ", heard.lower()).split())))


def _entry_form(entry: str, form: str, said_article: bool) -> str:
    """An entry the way the user said the query: "Lark.", or "A lark." (with the entry's own
    article) when what Whisper heard began with one."""
    first = entry.strip().split(" ", 1)[0].lower()
    if said_article and first in ("a", "an", "the"):
        return _spoken(f"{first} {form}")
    return _spoken(form)


def bias_transcript(
    whisper: Any,
    encoded: np.ndarray,
    hypotheses: Sequence[str],
    vocab: Vocabulary,
    slack: float = BIAS_SLACK,
    candidates: int = BIAS_CANDIDATES,
) -> BiasedTranscript:
    """Snap the top hypothesis to the best-scoring nearby vocabulary entry when its score is
    within ``slack`` of the hypothesis' own (see the module doc). ``encoded`` is the clip's
    Whisper encoder output ``[frames, d]``; ``whisper`` a :class:`WhisperEncoder`."""
    heard = hypotheses[0] if hypotheses else ""
    keep = BiasedTranscript(heard, heard, None, None)
    if not heard.strip() or not len(vocab):
        return keep
    said = normalise(heard)
    if said in vocab.forms:  # what Whisper heard is the collection's word: nothing to snap
        entry = vocab.entries[vocab.forms.index(said)]
        return BiasedTranscript(heard, entry, entry, 0.0)
    near = vocab.nearest(hypotheses, candidates)
    if not near:
        return keep
    said_article = _said_article(heard)
    texts = [" " + heard.strip()]
    texts += [_entry_form(vocab.entries[i], vocab.forms[i], said_article) for i in near]
    scores = whisper.text_logprobs(encoded, texts)
    j = int(np.argmax(scores[1:])) + 1
    margin = round(float(scores[j] - scores[0]), 4)
    if margin < -slack:
        return BiasedTranscript(heard, heard, None, margin)
    entry = vocab.entries[near[j - 1]]
    return BiasedTranscript(heard, entry, entry, margin)
