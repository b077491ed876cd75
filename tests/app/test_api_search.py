"""POST /v1/search: by text, by stored item, by uploaded files, averaged examples, filters, errors."""

from __future__ import annotations

import json

import pytest
from conftest import png_bytes, wav_bytes


@pytest.fixture(scope="module")
def stored(client) -> dict[str, int]:
    r = client.post(
        "/v1/items",
        json={
            "items": [
                {"text": "search: a red square", "concept": "red", "extra": {"license": "CC0"}},
                {"text": "search: a green square", "concept": "green"},
            ]
        },
    )
    ids = {"red_text": r.json()["items"][0]["id"], "green_text": r.json()["items"][1]["id"]}
    r = client.post(
        "/v1/items",
        files=[("files", ("red.png", png_bytes((250, 10, 10)), "image/png"))],
        data={"concept": "red"},
    )
    ids["red_image"] = r.json()["items"][0]["id"]
    r = client.post(
        "/v1/items",
        files=[("files", ("beep.wav", wav_bytes(880.0), "audio/wav"))],
        data={"concept": "beep"},
    )
    ids["beep_audio"] = r.json()["items"][0]["id"]
    return ids


def test_text_search_ranks_the_identical_text_first(client, stored) -> None:
    r = client.post("/v1/search", json={"queries": [{"text": "search: a red square"}], "k": 3})
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["id"] == stored["red_text"] and res[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in res] == sorted((h["score"] for h in res), reverse=True)
    assert res[0]["text"] == "search: a red square" and res[0]["content_url"].endswith("/content")


def test_target_modalities_and_filters(client, stored) -> None:
    r = client.post(
        "/v1/search", json={"queries": [{"text": "red"}], "k": 50, "modalities": ["image"]}
    )
    assert {h["modality"] for h in r.json()["results"]} == {"image"}
    r = client.post(
        "/v1/search", json={"queries": [{"text": "red"}], "k": 50, "filters": {"concept": "red"}}
    )
    assert {h["concept"] for h in r.json()["results"]} == {"red"}
    r = client.post(
        "/v1/search",
        json={"queries": [{"text": "red"}], "k": 50, "filters": {"where": {"license": "CC0"}}},
    )
    assert [h["id"] for h in r.json()["results"]] == [stored["red_text"]]


def test_search_by_stored_item_and_averaged_examples(client, stored) -> None:
    r = client.post("/v1/search", json={"queries": [{"item_id": stored["beep_audio"]}], "k": 1})
    assert r.json()["results"][0]["id"] == stored["beep_audio"]
    r = client.post(
        "/v1/search",
        json={
            "queries": [{"item_id": stored["red_text"]}, {"item_id": stored["red_text"]}],
            "k": 1,
        },
    )
    assert r.json()["results"][0]["id"] == stored["red_text"]
    r = client.post(
        "/v1/search",
        json={
            "queries": [{"text": "search: a red square"}, {"item_id": stored["red_image"]}],
            "k": 5,
        },
    )
    assert r.status_code == 200 and len(r.json()["results"]) >= 2


def test_search_by_uploaded_files(client, stored) -> None:
    r = client.post("/v1/search", files=[("files", ("q.wav", wav_bytes(880.0), "audio/wav"))])
    assert r.status_code == 200 and r.json()["results"][0]["id"] == stored["beep_audio"]
    r = client.post(
        "/v1/search",
        data={
            "request": json.dumps({"queries": [{"text": "red"}], "k": 2, "modalities": ["image"]})
        },
        files=[("files", ("q.png", png_bytes((250, 10, 10)), "image/png"))],
    )
    assert r.status_code == 200 and r.json()["results"][0]["modality"] == "image"


def test_empty_store_returns_an_empty_list(fresh_service) -> None:
    c, _ = fresh_service
    r = c.post("/v1/search", json={"queries": [{"text": "a dog barking"}], "k": 5})
    assert r.status_code == 200 and r.json()["results"] == []
    assert r.json()["groups"] is None
    r = c.post(
        "/v1/search",
        json={"queries": [{"text": "a dog barking"}], "k": 5, "group_by": "modality"},
    )
    assert r.status_code == 200
    assert r.json()["groups"] == {"text": [], "image": [], "audio": []}


def test_group_by_modality_returns_the_top_k_of_each_modality(client, stored) -> None:
    body = {"queries": [{"text": "search: a red square"}], "k": 2}
    mixed = client.post("/v1/search", json=body).json()
    r = client.post("/v1/search", json={**body, "group_by": "modality"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["results"] == mixed["results"]  # the single mixed ranking stays
    groups = doc["groups"]
    assert set(groups) == {"text", "image", "audio"}
    for modality, hits in groups.items():
        assert 1 <= len(hits) <= 2
        assert {h["modality"] for h in hits} == {modality}
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        # each list is that modality's own best, whatever the other modalities score
        alone = client.post("/v1/search", json={**body, "modalities": [modality]}).json()
        assert [h["id"] for h in hits] == [h["id"] for h in alone["results"]]
    assert groups["text"][0]["id"] == stored["red_text"]


def test_group_by_keeps_target_modalities_and_filters(client, stored) -> None:
    r = client.post(
        "/v1/search",
        json={
            "queries": [{"text": "red"}],
            "k": 5,
            "group_by": "modality",
            "modalities": ["image", "text"],
            "filters": {"concept": "red"},
        },
    )
    groups = r.json()["groups"]
    assert list(groups) == ["image", "text"]
    assert [h["id"] for h in groups["image"]] == [stored["red_image"]]
    assert [h["id"] for h in groups["text"]] == [stored["red_text"]]
    # multipart: group_by goes in the request part like every other option
    r = client.post(
        "/v1/search",
        data={"request": json.dumps({"k": 1, "group_by": "modality"})},
        files=[("files", ("q.wav", wav_bytes(880.0), "audio/wav"))],
    )
    assert r.status_code == 200 and r.json()["groups"]["audio"][0]["id"] == stored["beep_audio"]


def test_group_by_is_documented_in_the_openapi_schema(client) -> None:
    schema = client.get("/openapi.json").json()
    prop = schema["components"]["schemas"]["SearchIn"]["properties"]["group_by"]
    assert "modality" in json.dumps(prop) and "k per modality" in prop["description"]
    examples = schema["components"]["schemas"]["SearchIn"]["examples"]
    assert any(e.get("group_by") == "modality" for e in examples)
    assert "groups" in schema["components"]["schemas"]["SearchOut"]["properties"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"queries": [], "k": 5}, 422, "no query"),
        ({"k": 5}, 422, "no query"),
        ({"queries": [{"text": "a", "item_id": 1}]}, 422, "exactly one"),
        ({"queries": [{"text": "a"}], "k": 0}, 422, "k"),
        ({"queries": [{"text": "a"}], "k": 10_000}, 422, "limit"),
        ({"queries": [{"text": "a"}], "modalities": ["smell"]}, 422, "smell"),
        ({"queries": [{"text": "a"}], "filters": {"where": {"bad key!": 1}}}, 422, "filters"),
        ({"queries": [{"text": "a"}], "filters": {"where": {"x": [1, 2]}}}, 422, "where"),
        ({"queries": [{"item_id": 987654}]}, 404, "987654"),
        ({"queries": [{"text": "a"}], "colour": "red"}, 422, "colour"),
        ({"queries": [{"text": "a"}], "group_by": "concept"}, 422, "group_by"),
        ({"queries": [{"text": "a"}] * 40}, 422, "at most"),
    ],
)
def test_search_errors(client, body, status, words) -> None:
    r = client.post("/v1/search", json=body)
    assert r.status_code == status, r.text
    assert words in json.dumps(r.json())


def test_search_upload_errors(client) -> None:
    r = client.post(
        "/v1/search", files=[("files", ("x.png", b"<svg onload=alert(1)>", "image/png"))]
    )
    assert r.status_code == 415
    r = client.post(
        "/v1/search",
        data={"request": "{oops"},
        files=[("files", ("q.wav", wav_bytes(), "audio/wav"))],
    )
    assert r.status_code == 422 and "request" in r.json()["detail"]


@pytest.mark.parametrize(
    "stray",
    [{"modalities": "image"}, {"k": "1"}, {"queries": "red"}, {"modalities": "image", "k": "2"}],
)
def test_stray_form_fields_are_refused_not_ignored(client, stored, stray) -> None:
    """`-F modalities=image` used to be ignored silently (a search over every modality).
    ``stored`` puts the red image in the store, so the honoured search below has an image to
    find whatever ran before (alone, the session's store may be empty)."""
    r = client.post(
        "/v1/search",
        data={"request": json.dumps({"k": 3}), **stray},
        files=[("files", ("q.png", png_bytes((250, 10, 10)), "image/png"))],
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert all(repr(name) in detail for name in stray), detail
    assert "'request' part" in detail and "JSON" in detail
    # the same options inside the request part are honoured
    r = client.post(
        "/v1/search",
        data={"request": json.dumps({"k": 3, "modalities": ["image"]})},
        files=[("files", ("q.png", png_bytes((250, 10, 10)), "image/png"))],
    )
    assert r.status_code == 200 and {h["modality"] for h in r.json()["results"]} == {"image"}
    assert stored["red_image"] in [h["id"] for h in r.json()["results"]]


def test_stray_form_fields_on_other_routes(client) -> None:
    img = ("x.png", png_bytes((1, 2, 3)), "image/png")
    r = client.post("/v1/items", files=[("files", img)], data={"concept": "x", "licence": "CC0"})
    assert r.status_code == 422 and "'licence'" in r.json()["detail"]
    assert "'concept'" in r.json()["detail"]  # names the fields the route does take
    r = client.post("/v1/embed", files=[("file", img)], data={"text": "a"})
    assert r.status_code == 422 and "'text'" in r.json()["detail"]
    r = client.post("/v1/fewshot/fit", files=[("files", img)], data={"concept": "x", "epochs": "3"})
    assert r.status_code == 422 and "'epochs'" in r.json()["detail"]


def _images_then_sounds_then_texts():
    """Hand-set maps for text queries: any image outranks any audio clip, which outranks any text."""
    from spaner.search.calibration import Calibration, PairCalibration

    return Calibration(
        "platt",
        {
            "text->image": PairCalibration(1.0, 50.0),
            "text->audio": PairCalibration(1.0, 25.0),
            "text->text": PairCalibration(1.0, 0.0),
        },
    )


def test_a_calibrated_model_ranks_the_mixed_results_by_relevance(
    client, stored, service_state, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a calibration the mixed ranking follows the calibrated relevance, not the cosine;
    `score` stays the raw cosine and each modality keeps the index's own order (vectors only:
    the full-text channel's fusion is tests/search/test_hybrid.py's)."""
    body = {"queries": [{"text": "search: a red square"}], "k": 50, "hybrid": False}
    raw = client.post("/v1/search", json=body).json()["results"]
    assert raw[0]["id"] == stored["red_text"] and raw[0]["relevance"] is None  # no calibration
    cal = _images_then_sounds_then_texts()
    monkeypatch.setattr(service_state.peek().spaner, "calibration", cal)
    r = client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    mods = [h["modality"] for h in res]
    assert mods == sorted(mods, key=["image", "audio", "text"].index)
    assert {h["id"] for h in res} == {h["id"] for h in raw}  # same hits, calibrated order
    rel = [h["relevance"] for h in res]
    assert all(0.0 <= p <= 1.0 for p in rel) and rel == sorted(rel, reverse=True)
    for m in set(mods):  # within a modality: the raw cosine order
        assert [h["id"] for h in res if h["modality"] == m] == [
            h["id"] for h in raw if h["modality"] == m
        ]
    by_id = {h["id"]: h["score"] for h in raw}
    assert all(h["score"] == pytest.approx(by_id[h["id"]]) for h in res)  # score stays the cosine
    # groups keep their own order by cosine, relevance beside it
    groups = client.post("/v1/search", json={**body, "k": 3, "group_by": "modality"}).json()
    for hits in groups["groups"].values():
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert all(h["relevance"] is not None for h in hits)


def test_the_schema_documents_score_and_relevance(client) -> None:
    hit = client.get("/openapi.json").json()["components"]["schemas"]["HitOut"]["properties"]
    assert "cosine" in hit["score"]["description"]
    assert "calibrated" in hit["relevance"]["description"]


def test_the_ui_mixed_table_follows_the_calibration(
    client, stored, service_state, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spaner.app.ui import actions

    view = actions.run_search(
        service_state,
        "search: a red square",
        None,
        None,
        ["text", "image", "audio"],
        20,
        hybrid=False,
    )
    assert actions.TEXT_COLUMNS[:3] == ["relevance", "score", "modality"]
    assert view.mixed[0][2] == "text" and view.mixed[0][0] is None  # by cosine: no calibration
    cal = _images_then_sounds_then_texts()
    monkeypatch.setattr(service_state.peek().spaner, "calibration", cal)
    view = actions.run_search(
        service_state,
        "search: a red square",
        None,
        None,
        ["text", "image", "audio"],
        20,
        hybrid=False,
    )
    mods = [row[2] for row in view.mixed]
    assert mods[0] == "image" and mods == sorted(mods, key=["image", "audio", "text"].index)
    rel = [row[0] for row in view.mixed]
    assert rel == sorted(rel, reverse=True)
