"""Shapes shared by several resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "ErrorOut",
    "ValidationErrorOut",
    "ItemOut",
    "ERROR_RESPONSES",
    "BODY_ERROR_RESPONSES",
    "ONE_OF_TEXT_OR_ITEM",
]


class ErrorOut(BaseModel):
    error: str = Field(
        description="short machine-readable code", examples=["unsupported_media_type"]
    )
    detail: Any = Field(
        description="what went wrong and what to do about it",
        examples=["not_an_image.png: not a recognised file type; upload images (PNG, JPEG, ...)"],
    )


class ValidationErrorOut(BaseModel):
    """The 422 body of a request that fails validation (documented as ``HTTPValidationError``)."""

    error: str = Field(description="always 'invalid_request'", examples=["invalid_request"])
    detail: str = Field(
        description="every problem as 'field: message', joined by '; '",
        examples=["path.item_id: Input should be greater than or equal to 0"],
    )
    errors: list[dict[str, Any]] = Field(
        description="the problems, each with its 'loc', 'msg' and 'type'"
    )


class ItemOut(BaseModel):
    """A stored item's metadata."""

    id: int = Field(examples=[42])
    modality: str = Field(examples=["image"])
    source: str | None = Field(
        None, description="where it came from (an upload's file name)", examples=["dog.jpg"]
    )
    concept: str | None = Field(None, examples=["dog"])
    content_hash: str | None = Field(None, description="sha256 of the original content")
    extra: dict[str, Any] = Field(default_factory=dict, examples=[{"license": "CC-BY"}])
    text: str | None = Field(None, description="the text itself, for text items")
    content_url: str = Field(
        description="where the original content is served", examples=["/v1/items/42/content"]
    )


#: JSON schema of "exactly one of text / item_id" (what ``_one`` checks; null counts as absent)
ONE_OF_TEXT_OR_ITEM = {
    "oneOf": [
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["item_id"], "properties": {"item_id": {"type": "integer"}}},
    ]
}


def _err(desc: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": desc}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: _err("the body or the decoded input is over a limit (bytes, pixels, seconds, characters)"),
    415: _err("the upload is not an image or audio type the service can decode"),
    422: _err("the request or an input is invalid; the message names the field"),
}

#: Routes that read a request body also answer 400 when it cannot be parsed at all.
BODY_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _err("the body could not be parsed (malformed multipart/form-data)"),
    **ERROR_RESPONSES,
}
