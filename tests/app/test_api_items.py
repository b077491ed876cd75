"""/v1/items: add (JSON texts, multipart files), get, content, delete, duplicates, errors."""

from __future__ import annotations

import pytest
from conftest import png_bytes, wav_bytes


def test_add_text_items_get_and_content(client) -> None:
    r = client.post(
        "/v1/items",
        json={
            "items": [
                {"text": "items: a cat", "concept": "cat", "source": "s.txt", "extra": {"n": 1}}
            ]
        },
    )
    assert r.status_code == 201
    item = r.json()["items"][0]
    got = client.get(f"/v1/items/{item['id']}").json()
    assert got == item and got["text"] == "items: a cat" and got["extra"] == {"n": 1}
    c = client.get(item["content_url"])
    assert c.status_code == 200 and c.text == "items: a cat"
    assert c.headers["content-type"].startswith("text/plain")
    assert c.headers["x-content-type-options"] == "nosniff"
    assert "filename=" in c.headers["content-disposition"]


def test_add_files_with_metadata_and_serve_them_back(client) -> None:
    img, wav = png_bytes((1, 2, 3)), wav_bytes(300.0)
    r = client.post(
        "/v1/items",
        files=[("files", ("a.png", img, "image/png")), ("files", ("b.wav", wav, "audio/wav"))],
        data={"concept": "misc", "extra": '{"license": "CC-BY"}'},
    )
    assert r.status_code == 201
    a, b = r.json()["items"]
    assert (a["modality"], b["modality"]) == ("image", "audio")
    assert a["source"] == "a.png" and a["concept"] == "misc" and a["extra"] == {"license": "CC-BY"}
    ca = client.get(f"/v1/items/{a['id']}/content")
    assert ca.content == img and ca.headers["content-type"] == "image/png"
    assert ca.headers["x-content-type-options"] == "nosniff"
    assert ca.headers["content-disposition"] == f'inline; filename="item-{a["id"]}.png"'
    cb = client.get(f"/v1/items/{b['id']}/content")
    assert cb.content == wav and cb.headers["content-type"] == "audio/wav"


def test_duplicates_are_not_stored_twice(client) -> None:
    body = {"items": [{"text": "items: dup"}]}
    first = client.post("/v1/items", json=body).json()["items"][0]["id"]
    again = client.post("/v1/items", json=body).json()
    assert again["items"][0]["id"] == first and again["duplicates"] == [first]


def test_delete_then_404(client) -> None:
    item = client.post("/v1/items", json={"items": [{"text": "items: to delete"}]}).json()["items"][
        0
    ]
    assert client.delete(f"/v1/items/{item['id']}").status_code == 204
    for r in (
        client.get(f"/v1/items/{item['id']}"),
        client.get(f"/v1/items/{item['id']}/content"),
        client.delete(f"/v1/items/{item['id']}"),
    ):
        assert r.status_code == 404 and str(item["id"]) in r.json()["detail"]


def test_item_errors(client) -> None:
    assert client.get("/v1/items/-1").status_code == 422
    assert client.get("/v1/items/abc").status_code == 422
    assert client.post("/v1/items", json={"items": []}).status_code == 422
    assert client.post("/v1/items", json={"items": [{"text": ""}]}).status_code == 422
    r = client.post("/v1/items", data={"concept": "x"})
    assert r.status_code == 422 and "nothing to add" in r.json()["detail"]
    r = client.post(
        "/v1/items", files=[("files", ("x.png", png_bytes(), "image/png"))], data={"extra": "[1]"}
    )
    assert r.status_code == 422 and "extra" in r.json()["detail"]
    r = client.post(
        "/v1/items", files=[("files", ("x.png", png_bytes(), "image/png"))], data={"extra": "{bad"}
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/items", files=[("files", ("page.html", b"<html><script>x</script>", "text/html"))]
    )
    assert r.status_code == 415


def test_failed_batch_adds_nothing(client) -> None:
    before = client.get("/v1/stats").json()["items"]
    r = client.post(
        "/v1/items",
        files=[
            ("files", ("ok.png", png_bytes((9, 9, 9)), "image/png")),
            ("files", ("bad.png", b"\x89PNG\r\n\x1a\nxx", "image/png")),
        ],
    )
    assert r.status_code in (415, 422)
    assert client.get("/v1/stats").json()["items"] == before


@pytest.mark.parametrize("written", ["+0.0", "0.0", "1e0", "+1", " 1", "0x1", "１"])
def test_an_item_id_must_be_decimal_digits(client, written: str) -> None:
    """Found by schemathesis: "+0.0" parsed as item 0. An id written otherwise than in decimal
    digits is a 422, on every route that takes one, and the plain id still works."""
    item = client.post("/v1/items", json={"items": [{"text": "a digit"}]}).json()["items"][0]
    for path in (f"/v1/items/{written}", f"/v1/items/{written}/content"):
        r = client.get(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert "decimal digits" in r.text
    assert client.delete(f"/v1/items/{written}").status_code == 422
    assert client.get(f"/v1/items/{item['id']}/content").status_code == 200
