"""The search :class:`Filter` and its translation to SQLite and Milvus expressions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Filter", "Scalar", "COLUMN_FIELDS", "to_sql", "to_milvus_expr"]

Scalar = str | int | float | bool | None

#: ``where`` keys that name a metadata column; any other key looks into ``Item.extra``.
COLUMN_FIELDS = ("modality", "concept", "source", "content_hash")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def _as_tuple(v: str | Sequence[str] | None, name: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    vals = (v,) if isinstance(v, str) else tuple(v)
    if not vals or not all(isinstance(x, str) for x in vals):
        raise ValueError(f"Filter.{name} must be a string or a non-empty list of strings")
    return vals


@dataclass(frozen=True)
class Filter:
    """Restrict a search to items matching every given condition (AND).

    ``modality`` / ``concept``: one value or a list (any of). ``where``: equality on
    metadata fields; keys in :data:`COLUMN_FIELDS` address columns, other keys the item's
    ``extra`` JSON (top-level keys). Values are scalars; ``None`` matches a missing/null field.
    """

    modality: str | Sequence[str] | None = None
    concept: str | Sequence[str] | None = None
    where: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", _as_tuple(self.modality, "modality"))
        object.__setattr__(self, "concept", _as_tuple(self.concept, "concept"))
        where = dict(self.where or {})
        for k, v in where.items():
            if not isinstance(k, str) or not _KEY.match(k):
                raise ValueError(f"Filter.where key {k!r} is not a plain field name")
            if not (v is None or isinstance(v, (str, int, float, bool))):
                raise ValueError(f"Filter.where[{k!r}] must be a scalar, got {type(v).__name__}")
        object.__setattr__(self, "where", where)

    def is_empty(self) -> bool:
        return self.modality is None and self.concept is None and not self.where

    def cache_key(self) -> str:
        return json.dumps([self.modality, self.concept, sorted(self.where.items())], default=str)


def to_sql(flt: Filter | None) -> tuple[str, list[Any]]:
    """A SQLite WHERE clause (without the keyword; ``"1"`` when empty) and its parameters."""
    if flt is None or flt.is_empty():
        return "1", []
    parts: list[str] = []
    params: list[Any] = []
    for col in ("modality", "concept"):
        vals = getattr(flt, col)
        if vals is not None:
            parts.append(f"{col} IN ({','.join('?' * len(vals))})")
            params.extend(vals)
    for k, v in flt.where.items():
        expr = k if k in COLUMN_FIELDS else "json_extract(extra, ?)"
        if k not in COLUMN_FIELDS:
            params.append(f'$."{k}"')
        if v is None:
            parts.append(f"{expr} IS NULL")
        else:
            parts.append(f"{expr} = ?")
            params.append(int(v) if isinstance(v, bool) else v)
    return " AND ".join(parts), params


def _milvus_literal(v: Scalar) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def to_milvus_expr(flt: Filter | None) -> str:
    """A Milvus boolean expression over the scalar fields and the ``extra`` JSON field."""
    if flt is None or flt.is_empty():
        return ""
    parts: list[str] = []
    for col in ("modality", "concept"):
        vals = getattr(flt, col)
        if vals is not None:
            parts.append(f"{col} in [{', '.join(_milvus_literal(v) for v in vals)}]")
    for k, v in flt.where.items():
        expr = k if k in COLUMN_FIELDS else f'extra["{k}"]'
        if v is None:
            parts.append(f"{expr} is null" if k in COLUMN_FIELDS else f"not exists {expr}")
        else:
            parts.append(f"{expr} == {_milvus_literal(v)}")
    return " and ".join(parts)
