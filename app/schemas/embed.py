"""``POST /v1/embed``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EmbedText", "EmbedOut"]


class EmbedText(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"text": "a dog barking"}]}
    )
    text: str = Field(min_length=1, description="the text to embed")


class EmbedOut(BaseModel):
    modality: str = Field(examples=["text"])
    model_id: str = Field(
        description="the model (space) the vector belongs to", examples=["3fa2c1d09b7e"]
    )
    dim: int = Field(examples=[512])
    vector: list[float] = Field(description="unit-length vector in the unified space")
