"""The lexical channel: which text of an item is full-text indexed, and how a query is
turned into a safe SQLite FTS5 ``MATCH`` expression.

The full-text index is the FTS5 table ``items_fts(body, fields)`` in the store's
``metadata.sqlite``, keyed by item id (``rowid``), written and deleted in the same SQLite
transactions as the ``items`` rows (see :mod:`.metadata`), so it is exactly as durable and as
consistent with the vectors as the metadata itself.

* ``body``: the item's text content (text items) and the transcript of spoken audio, taken from
  ``extra["transcript"]`` (:data:`TRANSCRIPT_KEY`) when it is a string.
* ``fields``: the ``extra`` fields the collection chose (``text_fields`` in the store's
  ``backend_config``; default none, so file names and other metadata never answer a query).

An item with neither gets no row (empty rows would lower BM25's average document length).

Tokeniser: ``porter unicode61 remove_diacritics 2``: case and diacritics folded
(``Café`` = ``cafe``), then English Porter stemming, so ``dogs``/``barking`` match
``dog``/``barks``. Stemming is chosen because queries and captions disagree on number and
tense far more often than the conflation it causes (``universe``/``university``) hurts a
channel that is fused with the vector ranking anyway; non-English words pass through it
mostly unchanged. Han, Hiragana and Katakana have no spaces between words: each such
character is indexed as its own token and a run of them in a query is searched as a phrase
(a substring match).

Queries are never passed raw to ``MATCH``: :func:`match_expression` splits them into words
itself, drops English stop words, keeps at most :data:`MAX_QUERY_TOKENS` distinct words from
the first :data:`MAX_QUERY_CHARS` characters, quotes each (so ``"``, ``*``, ``-``, ``NEAR``,
``AND``/``OR``/``NOT``, parentheses and column filters are plain text) and ORs them: an item
matching any word is a hit, and BM25 ranks items matching more (and rarer) words higher. A
query with no word left (punctuation, stop words only) matches nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "FTS_TABLE",
    "TOKENIZER",
    "TRANSCRIPT_KEY",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TOKENS",
    "STOP_WORDS",
    "fts_ddl",
    "check_text_fields",
    "text_fields_of",
    "document",
    "query_terms",
    "match_expression",
]

FTS_TABLE = "items_fts"
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: key of ``Item.extra`` holding the transcript of a spoken audio item (indexed as its text)
TRANSCRIPT_KEY = "transcript"
#: characters of a query that are read (the rest is ignored)
MAX_QUERY_CHARS = 2000
#: distinct words of a query that are searched (the first ones)
MAX_QUERY_TOKENS = 32

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "up",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\U00020000-\U0002ffff"
)
_CJK_CHAR = re.compile(f"([{_CJK}])")
_CJK_RUN = re.compile(f"[{_CJK}]+")


def fts_ddl(schema: str = "main") -> str:
    """``CREATE VIRTUAL TABLE`` of the full-text index in ``schema`` (main, or temp for a
    read-only store that predates it)."""
    return (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {schema}.{FTS_TABLE} "
        f"USING fts5(body, fields, tokenize='{TOKENIZER}')"
    )


def check_text_fields(fields: Iterable[str] | str | None) -> tuple[str, ...]:
    """The ``extra`` field names to index, validated (plain names, first occurrence kept).
    A comma-separated string is accepted (the CLI's form)."""
    if fields is None:
        return ()
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    out: list[str] = []
    for f in fields:
        if not isinstance(f, str) or not _FIELD.match(f):
            raise ValueError(f"text field {f!r} is not a plain extra-field name")
        if f not in out and f != TRANSCRIPT_KEY:  # the transcript is always indexed
            out.append(f)
    return tuple(out)


def text_fields_of(fields: Iterable[str] | str | None) -> tuple[str, ...]:
    """:func:`check_text_fields` raising :class:`~.errors.StoreError` (store creation)."""
    from .errors import StoreError

    try:
        return check_text_fields(fields)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc


def fields_key(fields: Sequence[str]) -> str:
    """How the indexed fields are recorded in the ``meta`` table (``fts_fields``)."""
    return json.dumps(list(fields))


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str)]
    return []


def _space_cjk(text: str) -> str:
    return _CJK_CHAR.sub(r" \1 ", text) if _CJK_RUN.search(text) else text


def document(
    text: str | None, extra: Mapping[str, Any], text_fields: Sequence[str]
) -> tuple[str, str] | None:
    """``(body, fields)`` indexed for one item, or None when it has no text to index.
    String values (or lists of strings) of the chosen fields are indexed; others are not."""
    body = [text] if isinstance(text, str) else []
    body += _texts(extra.get(TRANSCRIPT_KEY))
    chosen = [t for f in text_fields for t in _texts(extra.get(f))]
    b, c = "\n".join(body).strip(), "\n".join(chosen).strip()
    if not b and not c:
        return None
    return _space_cjk(b), _space_cjk(c)


def _words(text: str) -> Iterator[str]:
    """Runs of token characters, as FTS5's unicode61 sees them: letters, numbers, marks and
    private-use characters; everything else (space, punctuation, symbols) separates."""
    start = None
    for i, ch in enumerate(text):
        cat = unicodedata.category(ch)
        if cat[0] in "LNM" or cat == "Co":
            if start is None:
                start = i
        elif start is not None:
            yield text[start:i]
            start = None
    if start is not None:
        yield text[start:]


def query_terms(query: str) -> list[str]:
    """The words of ``query`` that are searched, in order: lower-cased, NFKC-normalised,
    stop words dropped, a run of CJK characters kept as one space-separated phrase."""
    text = unicodedata.normalize("NFKC", query[:MAX_QUERY_CHARS])
    out: list[str] = []
    seen: set[str] = set()
    for w in _words(text):
        word = w.lower()
        parts: list[str] = []
        pos = 0
        for run in _CJK_RUN.finditer(word):  # split "abc狗在xyz" into abc / 狗 在 / xyz
            parts += [word[pos : run.start()], " ".join(run.group())]
            pos = run.end()
        parts.append(word[pos:])
        for p in parts:
            if p and p not in STOP_WORDS and p not in seen:
                seen.add(p)
                out.append(p)
                if len(out) >= MAX_QUERY_TOKENS:
                    return out
    return out


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for ``query``: its :func:`query_terms`, each quoted as a string,
    joined with OR; None when no word is left (the search then returns nothing)."""
    terms = query_terms(query)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
