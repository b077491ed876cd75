"""Numerals and number words, both ways: "2." <-> "Two.", "7" <-> "seven", "21" <-> "twenty-one".

Whisper writes an isolated spoken number as a numeral ("2.") or a word ("Two.") as it likes,
and a collection names its numbers either way (a text "Two", a concept "2"). The two never meet
in spelling or in the text encoder, so spoken queries compare and embed numbers in one form:

* matching (:func:`spaner.search.speech_bias.normalise`) writes every number 0-99 as words;
* the transcript a query embeds is written in the collection's style (:func:`number_style`:
  words unless its texts and concept names write more numbers as numerals), so a transcript
  "2." becomes "Two." for a collection of "Two"s and stays "2." for one of "2"s.

Only whole numbers 0-99 standing alone are converted: "2.5", "100" and "3rd" are left as they
are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "NUMBER_WORDS",
    "TENS",
    "number_word",
    "numerals_to_words",
    "words_to_numerals",
    "number_style",
    "in_style",
]

#: 0-19 as words
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)  # fmt: skip
#: 20, 30, ... 90 as words
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

_VALUE = {w: i for i, w in enumerate(NUMBER_WORDS)} | {w: 20 + 10 * i for i, w in enumerate(TENS)}
# a standalone 1-2 digit number: not part of 2.5, 1,000, 3rd or a longer number
_NUMERAL = re.compile(r"(?<![\w.,])(\d{1,2})(?![\w]|[.,]\d)")
_TENS_RE = "|".join(TENS)
_UNITS_RE = "|".join(NUMBER_WORDS[1:10])
_WORDS = re.compile(
    rf"\b(?:(?P<tens>{_TENS_RE})(?:[-\s](?P<unit>{_UNITS_RE}))?|(?P<small>{'|'.join(NUMBER_WORDS)}))\b",
    re.IGNORECASE,
)


def number_word(n: int) -> str:
    """``n`` (0-99) in words: ``7`` -> ``"seven"``, ``42`` -> ``"forty-two"``."""
    if not 0 <= n <= 99:
        raise ValueError(f"only 0-99 are spelled out, got {n}")
    if n < 20:
        return NUMBER_WORDS[n]
    tens, unit = divmod(n, 10)
    return TENS[tens - 2] + (f"-{NUMBER_WORDS[unit]}" if unit else "")


def _cased(word: str, like: str, at_start: bool) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if at_start or like[:1].isupper() else word


def numerals_to_words(text: str) -> str:
    """Every standalone number 0-99 written as words; one that begins the text is capitalised
    ("2." -> "Two.", "I saw 3 cats" -> "I saw three cats")."""

    def spell(m: re.Match[str]) -> str:
        word = number_word(int(m[1]))
        return _cased(word, "", not text[: m.start()].strip())

    return _NUMERAL.sub(spell, text)


def words_to_numerals(text: str) -> str:
    """Every number word 0-99 written as a numeral ("Two." -> "2.", "twenty one" -> "21")."""

    def value(m: re.Match[str]) -> str:
        if m["small"]:
            return str(_VALUE[m["small"].lower()])
        return str(_VALUE[m["tens"].lower()] + (_VALUE[m["unit"].lower()] if m["unit"] else 0))

    return _WORDS.sub(value, text)


def number_style(texts: Iterable[str]) -> str:
    """``"numerals"`` when the texts write more standalone numbers 0-99 as numerals than as
    words, else ``"words"`` (also with no numbers at all: what a text encoder reads best)."""
    numerals = words = 0
    for t in texts:
        if isinstance(t, str):
            numerals += len(_NUMERAL.findall(t))
            words += len(_WORDS.findall(t))
    return "numerals" if numerals > words else "words"


def in_style(text: str, style: str) -> str:
    """``text`` with its numbers written as ``style`` (``"words"`` or ``"numerals"``)."""
    return words_to_numerals(text) if style == "numerals" else numerals_to_words(text)
