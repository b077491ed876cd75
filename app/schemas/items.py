"""``/v1/items``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .common import ItemOut

__all__ = ["TextItemIn", "ItemsIn", "ItemsFormIn", "ItemsOut"]


class TextItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, examples=["a dog barking in the park"])
    concept: str | None = Field(None, examples=["dog"])
    source: str | None = Field(None, examples=["captions.txt:12"])
    extra: dict[str, Any] = Field(default_factory=dict, examples=[{"lang": "en"}])


class ItemsIn(BaseModel):
    """Text items as JSON (files go through multipart)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"items": [{"text": "a dog barking", "concept": "dog"}]}]},
    )
    items: list[TextItemIn] = Field(min_length=1)


class ItemsFormIn(ItemsIn):
    """The optional ``request`` part of a multipart ``POST /v1/items``: text items to add
    beside the uploaded files (may be empty when files are sent)."""

    items: list[TextItemIn] = Field(default_factory=list)  # type: ignore[assignment]


class ItemsOut(BaseModel):
    items: list[ItemOut]
    duplicates: list[int] = Field(
        default_factory=list,
        description="ids of items that were already stored (same content) and were not added again",
    )
