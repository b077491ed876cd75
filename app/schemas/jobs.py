"""``/v1/jobs`` and ``/v1/fewshot/fit``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import ONE_OF_TEXT_OR_ITEM

__all__ = ["JobOut", "SupportExampleIn", "FitIn"]


class JobOut(BaseModel):
    id: str = Field(examples=["9b1f0c2d4e6a8b0c"])
    kind: str = Field(examples=["fit"])
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] = Field(
        description="interrupted: the server stopped while the job was queued or running "
        "(the reason is in `error`); cancelled: stopped on request"
    )
    progress: float = Field(ge=0, le=1, examples=[0.4])
    message: str = Field(examples=["training"])
    metrics: dict[str, Any] = Field(
        default_factory=dict, description="final metrics (fit: before/after retrieval scores)"
    )
    result: dict[str, Any] = Field(
        default_factory=dict, description="fit: {model_id}; activate: {model_id, items}"
    )
    error: str | None = None
    created: float
    started: float | None = None
    finished: float | None = None
    cancel_requested: bool = Field(
        False, description="a cancel was asked for; a running job stops at its next step"
    )


class SupportExampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_OF_TEXT_OR_ITEM)
    concept: str = Field(min_length=1, examples=["dog"])
    text: str | None = Field(None, min_length=1, examples=["a dog barking"])
    item_id: int | None = Field(
        None, ge=0, le=2**63 - 1, description="a stored item used as an example", examples=[42]
    )

    @model_validator(mode="after")
    def _one(self) -> SupportExampleIn:
        if (self.text is None) == (self.item_id is None):
            raise ValueError(
                "each example needs exactly one of 'text' or 'item_id' (files go in multipart parts)"
            )
        return self


class FitIn(BaseModel):
    """A support set: a handful of labelled examples per concept, in two or more modalities."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "examples": [
                        {"item_id": 1, "concept": "dog"},
                        {"text": "a dog barking", "concept": "dog"},
                        {"item_id": 2, "concept": "cat"},
                        {"text": "a cat meowing", "concept": "cat"},
                    ],
                    "epochs": 60,
                }
            ]
        },
    )
    examples: list[SupportExampleIn] = Field(default_factory=list)
    epochs: int | None = Field(
        None, ge=1, le=2000, description="maximum epochs (default: the server's --fit-epochs)"
    )
    lr: float = Field(2e-3, gt=0, le=1)
    seed: int = Field(0, ge=0, le=2**32 - 1)
