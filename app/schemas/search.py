"""``POST /v1/search``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .common import ONE_OF_TEXT_OR_ITEM, ItemOut

__all__ = ["QueryIn", "FiltersIn", "SearchIn", "HitOut", "SearchOut", "Scalar"]

#: SQLite compares integers as int64: a larger one in a filter is refused (422), not a 500
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Scalar = str | Int64 | float | bool | None
#: a metadata field name, as the index accepts it in a filter
FieldName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]


class QueryIn(BaseModel):
    """One query example: a text, or a stored item (its stored vector is used)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_OF_TEXT_OR_ITEM)
    text: str | None = Field(None, min_length=1, examples=["a dog barking"])
    item_id: int | None = Field(
        None, ge=0, le=2**63 - 1, description="use a stored item as the example", examples=[42]
    )

    @model_validator(mode="after")
    def _one(self) -> QueryIn:
        if (self.text is None) == (self.item_id is None):
            raise ValueError(
                "each query needs exactly one of 'text' or 'item_id' (files go in multipart parts)"
            )
        return self


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concept: str | list[str] | None = Field(
        None, description="only items of this concept (or any of these)"
    )
    where: dict[FieldName, Scalar] = Field(
        default_factory=dict,
        description="equality on metadata: modality, concept, source, content_hash, or a key of extra",
        examples=[{"license": "CC-BY"}],
        json_schema_extra={"additionalProperties": False},  # keys: only the pattern above
    )


class SearchIn(BaseModel):
    """Several query examples are averaged into one query (few-shot retrieval by example)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"queries": [{"text": "a dog barking"}], "k": 5},
                {
                    "queries": [{"item_id": 3}, {"item_id": 7}],
                    "k": 10,
                    "modalities": ["image", "audio"],
                    "filters": {"where": {"license": "CC-BY"}},
                },
                {"queries": [{"text": "seven"}], "k": 4, "group_by": "modality"},
            ]
        },
    )
    queries: list[QueryIn] = Field(
        default_factory=list, description="examples; multipart files are added to them"
    )
    k: int = Field(10, ge=1, description="results to return")
    modalities: list[str] | None = Field(
        None, description="target modalities (default: all)", examples=[["image"]]
    )
    filters: FiltersIn | None = None
    speech: Literal["auto", "audio", "transcript", "both"] = Field(
        "auto",
        description=(
            "how uploaded audio queries are used: `audio` (the clip's embedding), `transcript` "
            "(Whisper's transcript, embedded as text), `both` (their mean), or `auto` (`transcript` "
            "when Whisper hears speech, else `audio`). Transcripts are returned in `transcripts`."
        ),
    )
    speech_bias: bool = Field(
        True,
        description=(
            "bias spoken queries' transcripts toward this collection's words (its text items and "
            "concept names): a word Whisper finds nearly as likely as what it heard replaces it "
            "(`heard` keeps Whisper's own transcript, `vocabulary_match` the entry). false: the "
            "transcript is what Whisper heard"
        ),
    )
    hybrid: bool = Field(
        True,
        description=(
            "fuse full-text evidence into the ranking: the query's words (its texts and the "
            "transcripts of spoken queries) are also looked up in the collection's full-text "
            "index (its text items and spoken transcripts, BM25), and a match raises an item's "
            "relevance; a query that is a stored text ranks that text first. false: vectors only"
        ),
    )
    group_by: Literal["modality"] | None = Field(
        None,
        description=(
            "'modality': also return the top-k of each target modality as its own list in "
            "`groups` (k per modality); `results` stays the single mixed ranking"
        ),
        examples=["modality"],
    )


class HitOut(ItemOut):
    score: float = Field(
        description="inner product with the query (cosine; higher is closer). Raw cosines of "
        "different modalities are on different scales: compare `relevance` across modalities",
        examples=[0.83],
    )
    relevance: float | None = Field(
        None,
        description=(
            "the cosine calibrated for this (query modality, target modality) pair, in [0, 1] "
            "(higher is more relevant; the calibration is fitted on the training run's "
            "validation split, see the README's search section). `results` is ranked by it when "
            "set; null when the model has no calibration (a checkpoint from before it)"
        ),
        examples=[0.71],
    )
    lexical: float | None = Field(
        None,
        description=(
            "full-text evidence with `hybrid`, in [0, 1]: 1 when the query is this item's text "
            "(case, punctuation, a leading article and numerals folded), else the share of the "
            "query's words the item's text holds, scaled; null when its text did not match"
        ),
        examples=[0.25],
    )


class TranscriptOut(BaseModel):
    """What Whisper heard in an uploaded audio query, and how the query used it."""

    file: str = Field(examples=["query.wav"])
    transcript: str | None = Field(
        None, description="the transcript the query used", examples=["A lark"]
    )
    heard: str | None = Field(
        None, description="what Whisper heard, before biasing", examples=["Mark!"]
    )
    vocabulary_match: str | None = Field(
        None,
        description="the collection's text or concept the transcript was snapped to (biasing)",
        examples=["A lark"],
    )
    bias_margin: float | None = Field(
        None,
        description=(
            "the match's mean token log-probability minus that of what Whisper heard (biasing "
            "snaps when it is above minus the server's slack)"
        ),
        examples=[-0.4],
    )
    no_speech_prob: float | None = Field(None, examples=[0.04])
    used: Literal["audio", "transcript", "both"] = Field(examples=["both"])
    confidence: float | None = Field(
        None,
        description="the decoder's mean token log-probability of the transcript (higher: surer)",
        examples=[-0.41],
    )
    reason: str | None = Field(
        None,
        description="why the query used its transcript or its sound (see the README's spoken queries)",
        examples=["100% in-vocabulary words, confidence -0.41, no-speech 0.12"],
    )


class SearchOut(BaseModel):
    model_id: str = Field(examples=["3fa2c1d09b7e"])
    transcripts: list[TranscriptOut] = Field(
        default_factory=list, description="one entry per uploaded audio query (speech != audio)"
    )
    results: list[HitOut] = Field(
        description=(
            "the top-k of every target modality together: by `relevance` when the model has a "
            "calibration, else by `score`"
        )
    )
    groups: dict[str, list[HitOut]] | None = Field(
        None,
        description=(
            "with `group_by: modality`: each target modality's own top-k, best first "
            "(every target modality is a key, with an empty list when it has no match)"
        ),
        examples=[{"image": [], "audio": [], "text": []}],
    )
    took_ms: float = Field(examples=[12.5])
