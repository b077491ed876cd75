"""The hybrid ranking (:mod:`spaner.search.hybrid`): full-text evidence fused with the vector
ranking, in the library, the CLI and the API, and hostile query text."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from spaner.index import EmbeddingSpace, Item, create_store

from spaner.search.calibration import Calibration, PairCalibration
from spaner.search.engine import Query, search_query
from spaner.search.hybrid import LEXICAL_WEIGHT, _fused_key, fuse, lexical_evidence

DIM = 8
TEXTS = ["A frog", "A dog", "a frog in a pond", "Una rana", "Two", "the sound of rain"]


def test_exact_text_is_full_evidence_with_case_articles_and_numerals_folded() -> None:
    assert lexical_evidence("a frog", "A frog") == pytest.approx(1.0)
    assert lexical_evidence("FROG!", "A frog.") == pytest.approx(1.0)
    assert lexical_evidence("2", "Two") == pytest.approx(1.0)
    assert lexical_evidence("frog", "a frog in a pond") == pytest.approx(LEXICAL_WEIGHT)
    assert lexical_evidence("frog pond tadpole", "a frog in a pond") == pytest.approx(
        LEXICAL_WEIGHT * 2 / 3
    )
    assert lexical_evidence("frogs", "a frog in a pond") == pytest.approx(LEXICAL_WEIGHT)  # stem
    assert lexical_evidence("cat", "A frog") == 0.0
    assert lexical_evidence("the a of", "A frog") == 0.0  # stop words only
    assert lexical_evidence("", "A frog") == 0.0


def test_fused_key_never_lowers_a_vector_match_and_puts_exact_text_first() -> None:
    for logit in (-30.0, -2.0, 0.0, 3.0, 30.0):
        assert _fused_key(logit, 0.0) == logit
        assert _fused_key(logit, 0.25) > logit
        assert _fused_key(logit, 0.5) > _fused_key(logit, 0.25)
        assert math.isfinite(_fused_key(logit, 1.0 - 1e-9))
    assert _fused_key(-30.0, 1.0 - 1e-9) > _fused_key(30.0, LEXICAL_WEIGHT)


class _Store:
    """The few store methods fusion reads, over a dict of texts."""

    def __init__(self, texts: dict[int, str], vecs: dict[int, np.ndarray]) -> None:
        self.texts, self.vecs = texts, vecs

    def get(self, ids):
        return [{"id": i, "modality": "text", "extra": {}} for i in ids]

    def vectors(self, ids):
        return np.stack([self.vecs[i] for i in ids])

    def content(self, i):
        return self.texts[i]


class _Hit:
    def __init__(self, i: int, score: float) -> None:
        self.id, self.score, self.metadata = i, score, {"modality": "text", "extra": {}}


def test_fusion_adds_lexical_only_candidates_with_their_cosine_and_ranks_exact_first() -> None:
    q = np.zeros(DIM, np.float32)
    q[0] = 1
    vecs = {i: np.eye(DIM, dtype=np.float32)[i] for i in range(4)}
    store = _Store({1: "A dog", 2: "a frog in a pond", 3: "A frog"}, vecs)
    per = {"text": [_Hit(1, 0.9), _Hit(2, 0.5)]}
    lexical = {"text": [(3, 4.0), (2, 2.0)]}
    cal = Calibration("platt", {"text->text": PairCalibration(10.0, -5.0)})
    out = fuse(store, q, "a frog", per, lexical, cal, {"text": 1.0})["text"]
    assert [s.id for s in out] == [3, 1, 2]  # exact text first, then the vector's best
    assert out[0].cosine == pytest.approx(0.0) and out[0].relevance > 0.999
    assert out[1].lexical is None and out[2].lexical == pytest.approx(LEXICAL_WEIGHT)
    # without a calibration: reciprocal rank, the same exact match first
    out = fuse(store, q, "a frog", per, lexical, None, {})["text"]
    assert out[0].id == 3 and all(s.relevance is None for s in out)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """Texts, two images and an audio item with a transcript; vectors random (a tiny model's
    space does not know frogs, so only the full-text channel can find the exact text)."""
    root = tmp_path_factory.mktemp("hybrid")
    rng = np.random.default_rng(0)
    items = [Item("text", content=t) for t in TEXTS]
    items += [Item("image", content=b"\x89PNG fake", source=f"img{i}.png") for i in range(2)]
    items += [
        Item(
            "audio",
            content=b"RIFF",
            source="frog.wav",
            extra={"transcript": "frog croaking in a pond"},
        )
    ]
    vecs = rng.standard_normal((len(items), DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    st = create_store(root / "store", EmbeddingSpace("test-space", DIM))
    ids = st.add(vecs, items)
    yield (
        st,
        dict(
            zip([i.content if i.modality == "text" else i.source for i in items], ids, strict=True)
        ),
    )
    st.close()


class _Model:
    calibration = None
    encoders = {"text": None, "image": None, "audio": None}
    modalities = ["text", "image", "audio"]


def _query(text: str) -> Query:
    rng = np.random.default_rng(zlib.crc32(text.encode()))  # the same in every process
    v = rng.standard_normal((1, DIM)).astype(np.float32)
    return Query(v / np.linalg.norm(v), {"text": 1.0}, [], text)


@pytest.mark.parametrize("text", TEXTS)
def test_a_stored_text_typed_exactly_ranks_first(store, text: str) -> None:
    st, ids = store
    found = search_query(_Model(), st, _query(text), k=5)
    assert found.results[0].id == ids[text]
    off = search_query(_Model(), st, _query(text), k=5, hybrid=False)
    assert all(h.lexical is None for h in off.results)


def test_spoken_transcripts_answer_through_the_full_text_index(store) -> None:
    st, ids = store
    found = search_query(_Model(), st, _query("frog"), k=3, modalities=["audio"])
    assert found.results[0].id == ids["frog.wav"] and found.results[0].lexical


HOSTILE = [
    "the of and a",  # stop words only
    "?!.,;:",
    '"frog',
    "frog*",
    "frog NEAR dog",
    "-frog",
    "frog OR (dog AND NOT rain)",
    "x" * 10_000,
    "βάτραχος",  # a language WordNet does not cover
    "青蛙",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_query_text_gives_results_not_errors(store, text: str) -> None:
    st, _ = store
    found = search_query(_Model(), st, _query(text), k=5)
    assert len(found.results) == 5


def test_empty_store_hybrid_search_is_empty(tmp_path: Path) -> None:
    with create_store(tmp_path / "s", EmbeddingSpace("e", DIM)) as st:
        assert search_query(_Model(), st, _query("a frog"), k=3).results == []


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    from spaner.datasets.synthetic import make_synthetic
    from spaner.ingest import ingest

    root = tmp_path_factory.mktemp("hybrid-api")
    manifest = make_synthetic(root / "data", concepts=3, per_concept=2, seed=5)
    ingest([manifest], root / "store", profile="tiny")
    state = ServiceState.open(Settings(store=root / "store", profile="tiny", ui=False))
    with TestClient(create_app(state=state)) as client:
        yield client
    state.close()


def _stored_texts(client) -> list[tuple[int, str]]:
    r = client.post(
        "/v1/search", json={"queries": [{"text": "x"}], "k": 50, "modalities": ["text"]}
    )
    assert r.status_code == 200, r.text
    return [(h["id"], h["text"]) for h in r.json()["results"]]


def test_api_hybrid_on_by_default_puts_the_typed_text_first_and_can_be_switched_off(
    service,
) -> None:
    texts = _stored_texts(service)
    assert texts
    for _item_id, text in texts:
        r = service.post("/v1/search", json={"queries": [{"text": text}], "k": 5})
        top = r.json()["results"][0]
        assert top["text"].lower() == text.lower() and top["lexical"] == pytest.approx(1.0)
    r = service.post(
        "/v1/search", json={"queries": [{"text": texts[0][1]}], "k": 5, "hybrid": False}
    )
    assert r.status_code == 200 and all(h["lexical"] is None for h in r.json()["results"])


@pytest.mark.parametrize("text", HOSTILE)
def test_api_hostile_text_is_a_result_or_a_4xx_and_changes_nothing(service, text: str) -> None:
    before = service.get("/v1/stats").json()
    r = service.post("/v1/search", json={"queries": [{"text": text}], "k": 3})
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.text
    if r.status_code != 200:
        assert r.json().get("detail")
    assert service.get("/v1/stats").json() == before


def test_a_typed_numeral_finds_the_number_word_and_back(store) -> None:
    from spaner.search.hybrid import with_number_forms

    assert "two" in with_number_forms("2").lower() and "2" in with_number_forms("two")
    st, ids = store
    assert search_query(_Model(), st, _query("2"), k=3).results[0].id == ids["Two"]
