"""The library search (:mod:`spaner.search.engine`, ``Spaner.search``) on a tiny model and a
small ingested store, and the proof that ``spaner search``, ``POST /v1/search`` and the UI
rank with it: the same query gives the same ranking through all of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from spaner.cli.main import main
from spaner.errors import ConfigError
from spaner.ingest import ingest
from spaner.ingest.binding import open_bound_store
from spaner.search.calibration import Calibration, PairCalibration
from spaner.search.engine import Example, Query, SearchResult, rank, search
from spaner.search.hybrid import fuse

K = 6


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 concepts x 2 items per modality, made with --profile tiny; a copy whose model has a
    calibration (hand-set: for a text query any image outranks any text)."""
    from spaner.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("libsearch")
    manifest = make_synthetic(root / "data", concepts=3, per_concept=2, seed=11)
    plain = root / "plain"
    assert ingest([manifest], plain, profile="tiny").added > 0
    calibrated = root / "calibrated"
    shutil.copytree(plain, calibrated)
    bound = open_bound_store(calibrated, read_only=True)
    try:
        ckpt = bound.spaner.checkpoint
    finally:
        bound.close()
    Calibration(
        "platt",
        {
            "text->image": PairCalibration(1.0, 50.0),
            "text->audio": PairCalibration(1.0, 25.0),
            "text->text": PairCalibration(1.0, 0.0),
        },
    ).save(ckpt)
    return {"plain": plain, "calibrated": calibrated, "data": manifest.parent}


def _library(store: Path, queries, **options) -> SearchResult:
    bound = open_bound_store(store, read_only=True)
    try:
        return bound.spaner.search(bound.store, queries, K, **options)
    finally:
        bound.close()


def _cli(store: Path, capsys, *flags: str) -> dict:
    rc = main(["search", "--store", str(store), *flags, "-k", str(K), "--json", "-q"])
    assert rc == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _service(store: Path):
    from fastapi.testclient import TestClient
    from spaner.app.main import create_app
    from spaner.app.settings import Settings
    from spaner.app.state import ServiceState

    state = ServiceState.open(Settings(store=store, profile="tiny", ui=False))
    return state, TestClient(create_app(state=state))


def _ranking(hits) -> list[tuple[int, float, float | None]]:
    return [
        (h.id, round(h.score, 4), None if h.relevance is None else round(h.relevance, 4))
        for h in hits
    ]


def _rows(rows) -> list[tuple[int, float, float | None]]:
    return [
        (
            r["id"],
            round(r["score"], 4),
            None if r["relevance"] is None else round(r["relevance"], 4),
        )
        for r in rows
    ]


@pytest.mark.parametrize("which", ["plain", "calibrated"])
def test_cli_api_and_ui_rank_as_the_library(built, capsys, which) -> None:
    store = built[which]
    lib = _library(store, "red", group_by="modality")
    assert len(lib.results) == K
    assert all((h.relevance is None) == (which == "plain") for h in lib.results)
    if which == "calibrated":  # the merge follows the calibration: images, sounds, then texts
        mods = [h.modality for h in lib.results]
        assert mods == sorted(mods, key=["image", "audio", "text"].index)
    cli = _cli(store, capsys, "--text", "red", "--group-by", "modality")
    assert _rows(cli["results"]) == _ranking(lib.results)
    assert {m: _rows(g) for m, g in cli["groups"].items()} == {
        m: _ranking(g) for m, g in lib.groups.items()
    }
    state, client = _service(store)
    try:
        with client:
            r = client.post(
                "/v1/search",
                json={"queries": [{"text": "red"}], "k": K, "group_by": "modality"},
            )
            assert r.status_code == 200, r.text
            doc = r.json()
            assert _rows(doc["results"]) == _ranking(lib.results)
            assert {m: _rows(g) for m, g in doc["groups"].items()} == {
                m: _ranking(g) for m, g in lib.groups.items()
            }
            from spaner.app.ui import actions

            view = actions.run_search(state, "red", None, None, list(lib.groups), K)
            assert [row[-1] for row in view.mixed] == [h.id for h in lib.results]
            assert view.searched == list(lib.groups)
    finally:
        state.close()


def test_examples_are_averaged_filtered_and_grouped(built, capsys) -> None:
    store = built["plain"]
    images = sorted((built["data"] / "images").iterdir())
    image = Example("image", str(images[0]))
    one = _library(store, image)
    assert one.results[0].metadata["source"] == str(images[0].resolve())
    assert one.results[0].score == pytest.approx(1.0, abs=1e-4)  # the query itself is stored
    # an example's stored item is the same query as its file
    again = _library(store, Example.item(one.results[0].id))
    assert [h.id for h in again.results] == [h.id for h in one.results]
    several = _library(store, [image, Example("image", str(images[1])), "a red picture"])
    cli = _cli(
        store,
        capsys,
        "--image",
        str(images[0]),
        "--image",
        str(images[1]),
        "--text",
        "a red picture",
    )
    assert _rows(cli["results"]) == _ranking(several.results)
    assert several.query.weights == pytest.approx({"image": 2 / 3, "text": 1 / 3})
    # targets and filters
    only = _library(store, "red", modalities=["audio", "image"], group_by="modality")
    assert {h.modality for h in only.results} == {"audio", "image"}
    assert list(only.groups) == ["audio", "image"]
    concept = only.results[0].metadata["concept"]
    import spaner

    narrowed = _library(store, "red", filters=spaner.Filter(modality="image", concept=concept))
    assert narrowed.results and {(h.modality, h.metadata["concept"]) for h in narrowed.results} == {
        ("image", concept)
    }
    assert narrowed.transcripts == [] and narrowed.groups is None


def test_rank_merges_candidate_lists_by_cosine_without_a_calibration() -> None:
    """The one merge step: lists from any channel, by score when there is no calibration."""

    class H:
        def __init__(self, i: int, s: float, m: str) -> None:
            self.id, self.score, self.metadata = i, s, {"modality": m}

    per = {"text": [H(1, 0.9, "text"), H(2, 0.2, "text")], "image": [H(3, 0.5, "image")]}
    q = np.zeros(4, np.float32)

    def ranked(cal, weights, k):
        return rank(fuse(None, q, "", per, {}, cal, weights), k)

    assert [h.id for h in ranked(None, {"text": 1.0}, 2)] == [1, 3]
    cal = Calibration(
        "platt",
        {"text->image": PairCalibration(1.0, 50.0), "text->text": PairCalibration(1.0, 0.0)},
    )
    hits = ranked(cal, {"text": 1.0}, 3)
    assert [h.id for h in hits] == [3, 1, 2] and all(h.relevance is not None for h in hits)
    assert [h.id for h in ranked(cal, {}, 3)] == [1, 3, 2]  # a bare vector: by cosine


def test_errors_name_the_problem(built) -> None:
    from spaner.pipeline import Spaner

    sp = Spaner.from_profile("tiny", modalities=["text"])
    with pytest.raises(ConfigError, match="unknown target modality 'smell'"):
        search(sp, None, "x", modalities=["smell"])
    with pytest.raises(ConfigError, match="k must be"):
        search(sp, None, "x", k=0)
    with pytest.raises(ConfigError, match="group_by"):
        search(sp, None, "x", group_by="concept")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no image encoder"):
        search(sp, None, Example("image", b"png"))
    with pytest.raises(ConfigError, match="no query"):
        search(sp, None, [])
    with pytest.raises(ConfigError, match="either a value or a stored item_id"):
        Example("text", "a", item_id=3)
    assert isinstance(Query(np.ones((1, 4), np.float32)).weights, dict)
