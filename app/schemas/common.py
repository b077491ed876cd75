"""Shapes shared by several resources."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ErrorOut", "ItemOut", "ERROR_RESPONSES"]


class ErrorOut(BaseModel):
    error: str = Field(
        description="short machine-readable code", examples=["unsupported_media_type"]
    )
    detail: Any = Field(
        description="what went wrong and what to do about it",
        examples=["not_an_image.png: not a recognised file type; upload images (PNG, JPEG, ...)"],
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


def _err(desc: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": desc}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: _err("the body or the decoded input is over a limit (bytes, pixels, seconds, characters)"),
    415: _err("the upload is not an image or audio type the service can decode"),
    422: _err("the request or an input is invalid; the message names the field"),
}
