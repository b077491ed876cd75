"""The library's search: examples -> one query vector -> per-modality candidates -> one ranking.

    result = sp.search(store, ["a red square", Example("image", "red.png")], k=5)
    for hit in result.results:
        print(hit.id, hit.relevance, hit.score, hit.metadata["source"])

Four steps, each a function here, shared by ``spaner search``, ``POST /v1/search`` and the UI:

* :func:`build_query`: every example (a text, a file or bytes, a stored item) becomes a unit
  vector and their normalised mean is the query (few-shot retrieval by example); the query's
  modality shares weight the calibration. An audio example can be a spoken query
  (:mod:`spaner.search.spoken`): its transcript is kept in :attr:`Query.transcripts`.
* :func:`candidates`: one candidate list per target modality, the vector index's top ``k``;
  with ``hybrid`` (the default) also the full-text index's top ``k`` for the query's words
  (its texts and spoken transcripts), fused with the vector evidence (:mod:`.hybrid`).
* :func:`rank`: the one merge of those lists: by calibrated relevance when the model has a
  calibration (:mod:`spaner.search.mixed`), else by raw cosine (reciprocal rank when hybrid),
  the top ``k``.
* :func:`group`: each target modality's own list (``group_by="modality"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from spaner.errors import ConfigError
from spaner.search.hybrid import Scored, fuse, lexical_hits, pooled_rrf
from spaner.search.mixed import query_weights
from spaner.search.spoken import SPEECH_MODES, spoken_queries

if TYPE_CHECKING:
    from spaner.encoders.decode import RawInput
    from spaner.index import Filter, Hit
    from spaner.search.calibration import Calibration
    from spaner.search.speech_bias import Vocabulary

__all__ = [
    "GROUP_BY",
    "Example",
    "Query",
    "SearchHit",
    "SearchResult",
    "build_query",
    "target_modalities",
    "candidates",
    "scored_candidates",
    "rank",
    "group",
    "search_query",
    "search",
]


class Searcher(Protocol):
    """What a search needs of a model (a :class:`spaner.pipeline.Spaner` is one): its frozen
    encoders by modality, the SPANER model (for ``dim``), the calibration, and ``embed``."""

    encoders: Mapping[str, Any]
    model: Any
    calibration: Calibration | None

    @property
    def modalities(self) -> list[str]: ...

    def embed(self, modality: str, inputs: Sequence[Any], names: Any = None) -> np.ndarray: ...


#: how ``group_by`` may split the results
GROUP_BY = ("modality",)


@dataclass(frozen=True)
class Example:
    """One query example: a raw ``value`` of ``modality`` (a text; a file path or bytes), or
    a stored item by ``item_id`` (its stored vector, its stored modality). ``name`` labels the
    value in error messages (a file name, say)."""

    modality: str | None = None
    value: RawInput | None = None
    item_id: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.item_id is None):
            raise ConfigError("a query example is either a value or a stored item_id, not both")
        if self.value is not None and not self.modality:
            raise ConfigError(f"query example {self.name or self.value!r}: name its modality")

    @classmethod
    def item(cls, item_id: int) -> Example:
        """A stored item as the example."""
        return cls(item_id=int(item_id))


@dataclass
class Query:
    """The query a search ranks by: a unit ``vector`` ``[1, dim]``, the ``weights`` of its
    examples' modalities (``{modality: share}``, for the calibration; empty: rank by cosine),
    what Whisper heard of each spoken example (``{"file", "transcript", "heard",
    "vocabulary_match", "bias_margin", "no_speech_prob", "used"}``, in example order), and the
    ``text`` the full-text channel searches (the text examples and the transcripts used)."""

    vector: np.ndarray
    weights: dict[str, float] = field(default_factory=dict)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""


@dataclass(frozen=True)
class SearchHit:
    """One result: ``score`` is the raw cosine with the query, ``relevance`` the calibrated
    score (0-1, comparable across modalities; None without a calibration; with the full-text
    channel, the fused relevance); ``lexical`` the full-text evidence (0-1, 1 = the query is
    this item's text; None when its text did not match); ``metadata`` holds ``modality``,
    ``source``, ``concept``, ``content_hash`` and ``extra``."""

    id: int
    score: float
    relevance: float | None
    metadata: Mapping[str, Any]
    lexical: float | None = None

    @property
    def modality(self) -> str:
        return self.metadata["modality"]


@dataclass
class SearchResult:
    """``results``: one ranking over every target modality, best first (at most ``k``);
    ``groups``: each target modality's own top ``k`` with ``group_by="modality"``, else None."""

    results: list[SearchHit]
    groups: dict[str, list[SearchHit]] | None
    query: Query

    @property
    def transcripts(self) -> list[dict[str, Any]]:
        return self.query.transcripts


def _examples(queries: str | Example | Sequence[str | Example]) -> list[Example]:
    items = [queries] if isinstance(queries, (str, Example)) else list(queries)
    return [Example("text", q) if isinstance(q, str) else q for q in items]


def _vocabulary(
    source: Vocabulary | Sequence[str] | Callable[[], Vocabulary | Sequence[str]] | None,
) -> Vocabulary | Sequence[str] | None:
    return source() if callable(source) else source


#: what an example's vector is made of, by how a spoken example was used
_SPOKEN_SHARES = {
    "audio": {"audio": 1.0},
    "transcript": {"text": 1.0},
    "both": {"text": 0.5, "audio": 0.5},
}


def build_query(
    spaner: Searcher,
    store: Any,
    queries: str | Example | Sequence[str | Example],
    speech: str = "auto",
    vocabulary: Vocabulary | Sequence[str] | Callable[[], Any] | None = None,
) -> Query:
    """The query of ``queries`` (a text, an :class:`Example`, or a list of them): each embedded
    (values batched per modality; stored items read from ``store``), their normalised mean.

    ``speech``: how audio examples are used (:data:`spaner.search.spoken.SPEECH_MODES`; needs a
    text encoder, else the audio alone). ``vocabulary``: the words spoken transcripts are snapped
    to (a :class:`~spaner.search.speech_bias.Vocabulary`, texts, or a callable that gives one,
    called only when a spoken example needs it); None: transcripts stay what Whisper heard."""
    examples = _examples(queries)
    if not examples:
        raise ConfigError("no query: give at least one example (a text, a file or a stored item)")
    if speech not in SPEECH_MODES:
        raise ConfigError(f"speech must be one of {', '.join(SPEECH_MODES)}, got {speech!r}")
    texts = [str(ex.value) for ex in examples if ex.item_id is None and ex.modality == "text"]
    vecs = np.zeros((len(examples), spaner.model.dim), np.float32)
    # per example: {modality: share} of what its vector is made of
    made_of: list[dict[str, float]] = [{} for _ in examples]
    spoken: dict[int, dict[str, Any]] = {}
    by_mod: dict[str, list[int]] = {}
    stored: list[int] = []
    for i, ex in enumerate(examples):
        if ex.item_id is not None:
            stored.append(i)
        else:
            by_mod.setdefault(str(ex.modality), []).append(i)
    for modality, idx in by_mod.items():
        if modality not in spaner.encoders:
            raise ConfigError(
                f"the model has no {modality} encoder (has: {', '.join(spaner.modalities)}); "
                "query with another modality"
            )
        values = [examples[i].value for i in idx]
        names = [examples[i].name for i in idx]
        if modality == "audio" and speech != "audio" and "text" in spaner.encoders:
            vocab = _vocabulary(vocabulary)
            heard = spoken_queries(
                spaner, values, names=names, mode=speech, vocabulary=vocab, bias=vocab is not None
            )
            for i, name, q in zip(idx, names, heard, strict=True):
                vecs[i] = q.vector
                spoken[i] = {"file": name, **q.to_dict()}
                made_of[i] = _SPOKEN_SHARES[q.used]
            continue
        vecs[idx] = spaner.embed(modality, values, names=names)
        for i in idx:
            made_of[i] = {modality: 1.0}
    if stored:
        ids = [int(examples[i].item_id) for i in stored]  # type: ignore[arg-type]
        vecs[stored] = store.vectors(ids)
        for i, meta in zip(stored, store.get(ids), strict=True):
            made_of[i] = {meta["modality"]: 1.0}
    shares: dict[str, float] = {}
    for part in made_of:
        for m, w in part.items():
            shares[m] = shares.get(m, 0.0) + w
    mean = vecs.mean(axis=0, keepdims=True)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-8:
        raise ConfigError(
            "the query examples cancel out (their mean is the zero vector); use fewer or other "
            "examples"
        )
    heard = [spoken[i] for i in sorted(spoken)]
    texts += [t["transcript"] for t in heard if t.get("used") != "audio" and t.get("transcript")]
    return Query(mean / norm, query_weights(shares), heard, "\n".join(texts))


def target_modalities(
    spaner: Searcher, modalities: str | Sequence[str] | None = None, filters: Filter | None = None
) -> list[str]:
    """The modalities to search, in the order given (default: every modality of the model),
    narrowed to ``filters.modality`` when it is set."""
    wanted = [modalities] if isinstance(modalities, str) else list(modalities or [])
    unknown = [m for m in wanted if m not in spaner.encoders]
    if unknown:
        raise ConfigError(
            f"unknown target modality {', '.join(map(repr, unknown))}; "
            f"this model has: {', '.join(spaner.modalities)}"
        )
    targets = list(dict.fromkeys(wanted or spaner.modalities))
    if filters is not None and filters.modality is not None:
        targets = [m for m in targets if m in filters.modality]
    return targets


def candidates(
    store: Any, query: Query, targets: Sequence[str], k: int, filters: Filter | None = None
) -> dict[str, list[Hit]]:
    """The vector index's top ``k`` of each target modality among items matching ``filters``,
    best first by cosine (empty lists for an empty store)."""
    from spaner.index import Filter

    if store.count() == 0:
        return {m: [] for m in targets}
    base = filters if filters is not None else Filter()
    return {m: list(store.search(query.vector, k, replace(base, modality=[m]))[0]) for m in targets}


def scored_candidates(
    store: Any,
    query: Query,
    targets: Sequence[str],
    k: int,
    calibration: Calibration | None,
    filters: Filter | None = None,
    hybrid: bool = True,
) -> dict[str, list[Scored]]:
    """Each target modality's candidates, scored and best first: the vector index's top ``k``
    and, with ``hybrid``, the full-text index's top ``k`` for :attr:`Query.text`, fused
    (:func:`spaner.search.hybrid.fuse`)."""
    per_target = candidates(store, query, targets, k, filters)
    lexical = (
        lexical_hits(store, query.text, targets, k, filters) if hybrid and store.count() > 0 else {}
    )
    return fuse(store, query.vector, query.text, per_target, lexical, calibration, query.weights)


def _hit(s: Scored) -> SearchHit:
    return SearchHit(s.id, s.cosine, s.relevance, s.metadata, s.lexical)


def rank(per_target: Mapping[str, Sequence[Scored]], k: int) -> list[SearchHit]:
    """The one merge: the best ``k`` candidates of every list by their key (the calibrated,
    fused logit; without a calibration the cosine, or the pooled reciprocal rank when a list
    holds lexical evidence); ties: the target's order in ``per_target``, then the list's."""
    rrf = (
        pooled_rrf(per_target)
        if any(s.relevance is None and s.lexical for hits in per_target.values() for s in hits)
        else None
    )
    pooled = [
        (-(rrf[s.id] if rrf is not None else s.key), ti, j, s)
        for ti, hits in enumerate(per_target.values())
        for j, s in enumerate(hits)
    ]
    pooled.sort(key=lambda r: r[:3])
    return [_hit(s) for *_, s in pooled[:k]]


def group(per_target: Mapping[str, Sequence[Scored]], k: int) -> dict[str, list[SearchHit]]:
    """Each target modality's own top ``k``, with the calibrated relevance beside the cosine."""
    return {m: [_hit(s) for s in hits[:k]] for m, hits in per_target.items()}


def _checked_targets(
    spaner: Searcher,
    k: int,
    modalities: str | Sequence[str] | None,
    filters: Filter | None,
    group_by: str | None,
) -> list[str]:
    if k < 1:
        raise ConfigError(f"k must be a positive number of results, got {k}")
    if group_by is not None and group_by not in GROUP_BY:
        raise ConfigError(f"group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}")
    return target_modalities(spaner, modalities, filters)


def search_query(
    spaner: Searcher,
    store: Any,
    query: Query,
    k: int = 10,
    modalities: str | Sequence[str] | None = None,
    filters: Filter | None = None,
    group_by: Literal["modality"] | None = None,
    hybrid: bool = True,
) -> SearchResult:
    """:func:`search` for a query already built (:func:`build_query`, or a ``Query(vector)``
    of one's own: without modality weights it ranks by cosine, without ``text`` by vectors
    alone)."""
    targets = _checked_targets(spaner, k, modalities, filters, group_by)
    per_target = scored_candidates(
        store, query, targets, k, spaner.calibration, filters, hybrid=hybrid
    )
    results = rank(per_target, k)
    groups = group(per_target, k) if group_by == "modality" else None
    return SearchResult(results, groups, query)


def search(
    spaner: Searcher,
    store: Any,
    queries: str | Example | Sequence[str | Example],
    k: int = 10,
    modalities: str | Sequence[str] | None = None,
    filters: Filter | None = None,
    group_by: Literal["modality"] | None = None,
    speech: str = "auto",
    vocabulary: Vocabulary | Sequence[str] | Callable[[], Any] | None = None,
    hybrid: bool = True,
) -> SearchResult:
    """Search ``store`` (an open vector store of ``spaner``'s space) by ``queries``: a text,
    an :class:`Example` or a list of them, averaged into one query (:func:`build_query`;
    ``speech`` and ``vocabulary`` for spoken audio examples).

    ``modalities``: the target modalities (default: all of the model's); ``filters``: a
    :class:`spaner.Filter` on concept and metadata (its ``modality`` narrows the targets);
    ``k``: results (per modality with ``group_by="modality"``, which also fills
    :attr:`SearchResult.groups`). The results are the top ``k`` of each target modality merged
    by :func:`rank`: by calibrated relevance when the model has a calibration, else by cosine.
    ``hybrid`` (default on) also asks the store's full-text index for the query's words (its
    texts and the transcripts of spoken examples) and fuses that evidence in
    (:mod:`spaner.search.hybrid`): a query that is a stored text ranks that text first.
    """
    _checked_targets(spaner, k, modalities, filters, group_by)  # before any embedding
    query = build_query(spaner, store, queries, speech=speech, vocabulary=vocabulary)
    return search_query(spaner, store, query, k, modalities, filters, group_by, hybrid=hybrid)
