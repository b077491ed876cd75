"""POST /v1/search with a spoken query: the transcript, what Whisper heard, the collection's word
it was snapped to (the store's texts), and `speech_bias: false` turning that off."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf


def _spoken(word: str) -> bytes:
    from spaner.datasets.espeak import synthesize_isolated

    samples, sr = synthesize_isolated(word, voice="en", out_rate=16000)
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32) / 32768.0, sr, format="WAV")
    return buf.getvalue()


@pytest.mark.slow  # a private tiny service (it adds items) and Whisper tiny.en
def test_a_spoken_query_is_biased_toward_the_stores_texts(fresh_service) -> None:
    client, _ = fresh_service
    r = client.post(
        "/v1/items",
        json={"items": [{"text": "A lark", "concept": "lark"}, {"text": "A frog"}]},
    )
    assert r.status_code == 201, r.text
    clip = [("files", ("lark.wav", _spoken("lark"), "audio/wav"))]

    def search(**opts) -> dict:
        req = {"k": 2, "modalities": ["text"], "speech": "transcript", **opts}
        r = client.post("/v1/search", files=clip, data={"request": json.dumps(req)})
        assert r.status_code == 200, r.text
        return r.json()

    on = search()["transcripts"][0]
    assert on["file"] == "lark.wav" and on["used"] == "transcript"
    assert on["transcript"] == on["vocabulary_match"] == "A lark"
    assert on["heard"] and on["heard"] != "A lark" and on["bias_margin"] is not None
    body = search(speech_bias=False)
    off = body["transcripts"][0]
    assert off["transcript"] == off["heard"] == on["heard"]
    assert off["vocabulary_match"] is None and off["bias_margin"] is None
    # biased, the query is the stored text itself: it ranks first with cosine 1
    top = search()
    assert top["results"][0]["text"] == "A lark"
    assert abs(top["results"][0]["score"] - 1.0) < 1e-4


def test_speech_bias_is_documented_and_validated(client) -> None:
    props = client.get("/openapi.json").json()["components"]["schemas"]["SearchIn"]["properties"]
    assert props["speech_bias"]["default"] is True
    r = client.post("/v1/search", json={"queries": [{"text": "x"}], "speech_bias": "maybe"})
    assert r.status_code == 422


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.mark.slow  # Whisper tiny.en (the shared transcriber: the tiny profile has none)
@pytest.mark.parametrize("speech", ["auto", "transcript", "both"])
def test_a_silent_spoken_query_is_searched_by_its_audio(client, speech: str) -> None:
    clip = [("files", ("silence.wav", _wav(np.zeros(16000, np.float32), 16000), "audio/wav"))]
    req = {"k": 2, "speech": speech}
    r = client.post("/v1/search", files=clip, data={"request": json.dumps(req)})
    assert r.status_code == 200, r.text
    (heard,) = r.json()["transcripts"]
    assert heard["used"] == "audio" and heard["transcript"] is None


@pytest.mark.parametrize("speech", ["auto", "transcript"])
def test_a_30_minute_spoken_query_is_refused_with_413(client, speech: str) -> None:
    # 30 minutes at 200 Hz, 8 bits: small to upload, long to hear
    long = _wav(np.zeros(30 * 60 * 200, np.float32), 200, "PCM_U8")
    clip = [("files", ("long.wav", long, "audio/wav"))]
    r = client.post("/v1/search", files=clip, data={"request": json.dumps({"speech": speech})})
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["detail"]


def test_the_default_audio_limit_refuses_30_minutes() -> None:
    from spaner.app.settings import Settings

    assert Settings.model_fields["max_audio_seconds"].default < 30 * 60
