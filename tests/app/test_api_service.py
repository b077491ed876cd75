"""GET /v1/health, GET /v1/stats, the OpenAPI schema, unknown routes."""

from __future__ import annotations


def test_health(client) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and len(body["model_id"]) == 12 and body["items"] >= 0


def test_stats_reports_model_index_device(client) -> None:
    client.post("/v1/items", json={"items": [{"text": "stats probe", "concept": "probe"}]})
    s = client.get("/v1/stats").json()
    assert s["items"] >= 1 and s["items_per_modality"]["text"] >= 1
    assert s["model"]["modalities"] == ["text", "image", "audio"] and s["model"]["dim"] > 0
    assert s["index"]["backend"] == "faiss" and s["index"]["type"] == "Flat"
    assert s["device"] == "cpu"


def test_openapi_lists_every_route_with_examples(client) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for p in [
        "/v1/embed",
        "/v1/search",
        "/v1/items",
        "/v1/items/{item_id}",
        "/v1/items/{item_id}/content",
        "/v1/fewshot/fit",
        "/v1/jobs/{job_id}",
        "/v1/models",
        "/v1/models/{model_id}/activate",
        "/v1/health",
        "/v1/stats",
    ]:
        assert p in paths, p
    search_body = paths["/v1/search"]["post"]["requestBody"]["content"]
    assert set(search_body) == {"application/json", "multipart/form-data"}
    schemas = doc["components"]["schemas"]
    assert schemas["SearchIn"]["examples"][0]["queries"] == [{"text": "a dog barking"}]
    assert "QueryIn" in schemas and "FitIn" in schemas and "ItemsIn" in schemas
    assert "APIKeyHeader" in doc["components"]["securitySchemes"]


def test_unknown_route_is_404_json(client) -> None:
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_wrong_method_is_405(client) -> None:
    assert client.put("/v1/health").status_code == 405
