"""POST /v1/embed: text, image, audio, and every error path."""

from __future__ import annotations

import numpy as np
from conftest import png_bytes, wav_bytes


def test_embed_text_is_a_unit_vector(client) -> None:
    r = client.post("/v1/embed", json={"text": "a dog barking"})
    assert r.status_code == 200
    body = r.json()
    assert body["modality"] == "text" and body["dim"] == len(body["vector"])
    assert abs(np.linalg.norm(body["vector"]) - 1) < 1e-4


def test_embed_image_and_audio_files(client) -> None:
    r = client.post("/v1/embed", files={"file": ("red.png", png_bytes(), "image/png")})
    assert r.status_code == 200 and r.json()["modality"] == "image"
    r = client.post("/v1/embed", files={"file": ("tone.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 200 and r.json()["modality"] == "audio"


def test_declared_type_is_ignored_content_is_sniffed(client) -> None:
    r = client.post("/v1/embed", files={"file": ("tone.png", wav_bytes(), "image/png")})
    assert r.status_code == 200 and r.json()["modality"] == "audio"


def test_not_an_image_is_415_with_a_message(client) -> None:
    r = client.post(
        "/v1/embed", files={"file": ("not_an_image.png", b"hello, world\n", "image/png")}
    )
    assert r.status_code == 415
    assert "not_an_image.png" in r.json()["detail"] and "PNG" in r.json()["detail"]


def test_truncated_image_is_422(client) -> None:
    r = client.post(
        "/v1/embed", files={"file": ("cut.png", png_bytes(size=(64, 64))[:-30], "image/png")}
    )
    assert r.status_code == 422 and "cut.png" in r.json()["detail"]


def test_too_many_pixels_is_413(client) -> None:
    r = client.post(
        "/v1/embed", files={"file": ("big.png", png_bytes(size=(600, 600)), "image/png")}
    )
    assert r.status_code == 413 and "pixel" in r.json()["detail"]


def test_too_long_audio_is_413(client) -> None:
    r = client.post(
        "/v1/embed", files={"file": ("long.wav", wav_bytes(seconds=6.0, rate=8000), "audio/wav")}
    )
    assert r.status_code == 413 and "second" in r.json()["detail"]


def test_empty_file_is_422(client) -> None:
    r = client.post("/v1/embed", files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 422


def test_text_errors_are_422(client) -> None:
    assert client.post("/v1/embed", json={"text": ""}).status_code == 422
    assert client.post("/v1/embed", json={"txt": "typo"}).status_code == 422
    r = client.post("/v1/embed", json={"text": "x" * 20_000})
    assert r.status_code == 413 and "character" in r.json()["detail"]


def test_bad_json_and_content_type(client) -> None:
    r = client.post("/v1/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/embed", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "multipart" in r.json()["detail"]
    r = client.post("/v1/embed", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_nothing_to_embed_and_both_given(client) -> None:
    r = client.post("/v1/embed", data={"other": "x"})
    assert r.status_code == 422
    r = client.post(
        "/v1/embed",
        data={"request": '{"text": "a"}'},
        files={"file": ("a.png", png_bytes(), "image/png")},
    )
    assert r.status_code == 422 and "not both" in r.json()["detail"]
