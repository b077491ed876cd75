"""``/v1/health`` and ``/v1/stats``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["HealthOut", "StatsOut"]


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])
    model_id: str = Field(examples=["3fa2c1d09b7e"])
    items: int | None = Field(
        examples=[1200],
        description="items in the store; while busy, the count last seen (null if none yet)",
    )
    busy: bool = Field(
        False, description="a write or a model switch holds the store (the service is alive)"
    )


class StatsOut(BaseModel):
    items: int
    items_per_modality: dict[str, int] = Field(examples=[{"text": 400, "image": 500, "audio": 300}])
    items_per_concept: dict[str, int] = Field(default_factory=dict)
    model: dict[str, Any] = Field(description="id, profile, modalities, dim, encoders")
    index: dict[str, Any] = Field(
        description="backend, index type (FAISS factory), count",
        examples=[{"backend": "faiss", "type": "Flat"}],
    )
    device: str = Field(examples=["cpu"])
    jobs_running: int = 0
