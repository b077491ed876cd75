"""``/v1/models``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ModelOut", "ModelsOut", "ActivateOut"]


class ModelOut(BaseModel):
    id: str = Field(examples=["3fa2c1d09b7e"])
    active: bool
    modalities: list[str] = Field(examples=[["text", "image", "audio"]])
    dim: int = Field(examples=[512])
    profile: str | None = Field(None, examples=["tiny"])
    created: float | None = None
    info: dict[str, Any] = Field(
        default_factory=dict, description="training record: job id, parent model, metrics"
    )


class ModelsOut(BaseModel):
    active: str
    models: list[ModelOut]


class ActivateOut(BaseModel):
    job_id: str
    status_url: str = Field(examples=["/v1/jobs/9b1f0c2d4e6a8b0c"])
