"""Ingest transcribes spoken audio (spaner.ingest.transcripts): the transcript is stored with its
item and found through the full-text channel; sounds get none; ``never`` turns it off; a re-run
does not transcribe again; without a transcriber the run goes on and says why once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from spaner.index import open_store

from spaner.cli.main import build_parser, main
from spaner.errors import ConfigError
from spaner.ingest import ingest, ingest_into, open_bound_store
from spaner.ingest.encoder import Result
from spaner.ingest.transcripts import (
    TRANSCRIBE_ENV,
    TRANSCRIBE_MODES,
    resolve_mode,
    with_transcript,
)

RATE = 16000


def _espeak(word: str) -> np.ndarray:
    from spaner.datasets.espeak import synthesize_isolated

    samples, _ = synthesize_isolated(word, voice="en", out_rate=RATE)
    return samples.astype(np.float32) / 32768.0


def _chirp(seconds: float = 1.0) -> np.ndarray:
    """A gated rising chirp: a sound, no words (Whisper tiny.en writes "Yeah.")."""
    t = np.arange(int(seconds * RATE)) / RATE
    gate = np.sin(2 * np.pi * 3 * t) > 0
    return (0.3 * np.sin(2 * np.pi * (300 + 900 * t) * t) * gate).astype(np.float32)


def _tone(freq: float) -> np.ndarray:
    t = np.arange(RATE // 2) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _write(folder: Path, clips: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, wave in clips.items():
        sf.write(folder / name, wave, RATE)
    return folder


def _extras(store_dir: Path) -> dict[str, dict]:
    """Each stored item's extra by its file name."""
    with open_store(store_dir, None, read_only=True) as store:
        metas = store.get(list(range(store.count())))
    return {Path(m["source"]).name: m["extra"] for m in metas}


# -- the option --------------------------------------------------------------------------


def test_the_mode_is_the_argument_else_the_environment_else_auto(monkeypatch) -> None:
    monkeypatch.delenv(TRANSCRIBE_ENV, raising=False)
    assert resolve_mode(None) == "auto"
    monkeypatch.setenv(TRANSCRIBE_ENV, "always")
    assert resolve_mode(None) == "always"
    assert resolve_mode("never") == "never"
    monkeypatch.setenv(TRANSCRIBE_ENV, "sometimes")
    with pytest.raises(ConfigError, match="auto, always, never"):
        resolve_mode(None)


def test_a_bad_mode_is_refused_before_a_store_is_made(tmp_path: Path) -> None:
    data = _write(tmp_path / "data", {"a.wav": _tone(440)})
    with pytest.raises(ConfigError, match="transcribe must be one of"):
        ingest([data], tmp_path / "store", profile="tiny", transcribe="sometimes")
    assert not (tmp_path / "store").exists()


def test_the_cli_offers_the_librarys_modes() -> None:
    parser = build_parser()
    for command in ("ingest", "demo"):
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        flag = next(a for a in sub._actions if "--transcribe" in a.option_strings)
        assert tuple(flag.choices) == TRANSCRIBE_MODES
    assert build_parser().parse_args(["ingest", "x", "--store", "s"]).transcribe is None


def test_a_transcript_the_item_carries_is_kept() -> None:
    assert with_transcript({"a": 1}, "Guitar.") == {"a": 1, "transcript": "Guitar."}
    assert with_transcript({"transcript": "mine"}, "Guitar.") == {"transcript": "mine"}
    assert with_transcript({"a": 1}, None) == {"a": 1}


def test_transcripts_travel_with_a_result_as_json() -> None:
    res = Result(0, [0, 2], np.ones((2, 3), np.float32), transcripts={2: "Guitar."})
    back = Result.from_json(json.loads(json.dumps(res.to_json())), res.vectors.tobytes())
    assert back.transcripts == {2: "Guitar."} and back.keep == [0, 2]


# -- the stage's plumbing, with a stand-in Whisper (the real one below) --------------------


class _Heard:
    """Answers like WhisperEncoder (load, encode_window, transcribe) with what it is told each
    file says; counts the clips it transcribed."""

    name = weights = "stand-in whisper"

    def __init__(self, said: dict[str, tuple[str, float]]) -> None:
        self.said, self.calls = said, []

    def load(self, content: bytes, source: str) -> str:
        return Path(source).name

    def encode_window(self, waves: list[str]) -> list[str]:
        return list(waves)

    def transcribe(self, waves, beam_size, num_hypotheses, encoded=None) -> list[dict]:
        self.calls += list(waves)
        out = []
        for w in waves:
            text, no_speech = self.said[w]
            out.append({"text": text, "no_speech_prob": no_speech, "hypotheses": [(text, -0.5)]})
        return out


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "clips",
        {"speech.wav": _tone(300), "noise.wav": _tone(500), "music.wav": _tone(700)},
    )


@pytest.fixture
def heard(monkeypatch) -> _Heard:
    said = {
        "speech.wav": ("Guitar.", 0.1),
        "noise.wav": ("I'm going to do it.", 0.9),  # Whisper's guess at noise: no speech
        "music.wav": ("♪ Thanks for watching. ♪", 0.3),  # a stock hallucination
    }
    fake = _Heard(said)
    monkeypatch.setattr("spaner.search.spoken.transcriber_for", lambda sp: fake)
    return fake


def test_speech_gets_its_transcript_in_the_same_write_and_a_rerun_does_not_transcribe(
    tmp_path: Path, clips: Path, heard: _Heard
) -> None:
    store = tmp_path / "store"
    rep = ingest([clips], store, profile="tiny", transcribe="auto", batch_size=2)
    assert rep.added == 3 and rep.transcribed == 1
    assert sorted(heard.calls) == ["music.wav", "noise.wav", "speech.wav"]
    assert "transcribe" in rep.stage_seconds
    assert _extras(store) == {
        "speech.wav": {"transcript": "Guitar."},
        "noise.wav": {},
        "music.wav": {},
    }
    heard.calls.clear()
    again = ingest([clips], store, transcribe="auto")
    assert again.added == 0 and again.skipped_present == 3 and heard.calls == []


def test_always_keeps_what_survives_cleaning_and_never_transcribes_nothing(
    tmp_path: Path, clips: Path, heard: _Heard
) -> None:
    ingest([clips], tmp_path / "always", profile="tiny", transcribe="always")
    assert _extras(tmp_path / "always") == {
        "speech.wav": {"transcript": "Guitar."},
        "noise.wav": {"transcript": "I'm going to do it."},
        "music.wav": {},  # hallucinations are dropped in every mode
    }
    heard.calls.clear()
    rep = ingest([clips], tmp_path / "never", profile="tiny", transcribe="never")
    assert rep.transcribed == 0 and heard.calls == []
    assert "transcribe" not in rep.stage_seconds
    assert all(e == {} for e in _extras(tmp_path / "never").values())


def test_a_manifests_own_transcript_is_kept_and_its_clip_not_transcribed(
    tmp_path: Path, clips: Path, heard: _Heard
) -> None:
    manifest = clips / "m.jsonl"
    row = {"id": 1, "audio": "speech.wav", "meta": {"transcript": "a guitar riff"}}
    manifest.write_text(json.dumps(row) + "\n")
    ingest([manifest], tmp_path / "store", profile="tiny", transcribe="auto")
    assert heard.calls == []
    (extra,) = _extras(tmp_path / "store").values()
    assert extra["transcript"] == "a guitar riff"


def test_without_a_transcriber_the_run_goes_on_and_says_why_once(
    tmp_path: Path, clips: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr("spaner.search.spoken.transcriber_for", lambda sp: None)
    with caplog.at_level(logging.WARNING, logger="spaner.ingest.transcripts"):
        rep = ingest([clips], tmp_path / "store", profile="tiny", transcribe="auto", batch_size=1)
    assert rep.added == 3 and rep.transcribed == 0 and not rep.bad
    why = [r.getMessage() for r in caplog.records if "without transcripts" in r.getMessage()]
    assert len(why) == 1 and "tiny-wav2vec2-audio is not a Whisper" in why[0]


def test_a_failing_transcriber_loses_no_item(
    tmp_path: Path, clips: Path, heard: _Heard, monkeypatch
) -> None:
    def broken(*a, **k):
        raise RuntimeError("decoder fell over")

    monkeypatch.setattr(heard, "transcribe", broken)
    rep = ingest([clips], tmp_path / "store", profile="tiny", transcribe="auto")
    assert rep.added == 3 and rep.transcribed == 0 and not rep.bad


# -- the real Whisper tiny.en --------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """eSpeak NG saying "guitar" (tiny.en hears "Guitar.") and a chirp (a sound)."""
    return _write(
        tmp_path_factory.mktemp("spoken"), {"guitar.wav": _espeak("guitar"), "chirp.wav": _chirp()}
    )


@pytest.mark.slow  # MiniLM and the shipped Whisper tiny.en (the offline profile's audio encoder)
def test_a_spoken_word_is_found_by_typing_it_and_a_sound_has_no_transcript(
    tmp_path: Path, spoken: Path
) -> None:
    bound = open_bound_store(
        tmp_path / "store", profile="offline", modalities=["text", "audio"], create=True
    )
    try:
        rep = ingest_into(bound, [spoken], transcribe="auto")
        assert rep.added == 2 and rep.transcribed == 1
        extras = _extras(tmp_path / "store")
        assert "guitar" in extras["guitar.wav"]["transcript"].lower()
        assert "transcript" not in extras["chirp.wav"]
        # an untrained model's vectors do not know guitars: the words channel finds it
        found = bound.spaner.search(bound.store, "guitar", k=2, modalities=["audio"], hybrid=True)
        top = found.results[0]
        assert Path(top.metadata["source"]).name == "guitar.wav" and top.lexical
        assert [i for i, _ in bound.store.lexical_search("guitar", 5)] == [top.id]
        again = ingest_into(bound, [spoken], transcribe="auto")
        assert again.added == 0 and again.skipped_present == 2
        assert "transcribe" not in again.stage_seconds
    finally:
        bound.close()


@pytest.mark.slow  # the shipped Whisper tiny.en, loaded for a model whose audio encoder has none
def test_cli_never_stores_no_transcript_and_auto_uses_the_shipped_whisper(
    tmp_path: Path, spoken: Path, capsys
) -> None:
    never, auto = tmp_path / "never", tmp_path / "auto"
    argv = ["ingest", str(spoken), "--profile", "tiny", "--json", "-q", "--store"]

    def report() -> dict:
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert main([*argv, str(never), "--transcribe", "never"]) == 0
    assert report()["transcribed"] == 0
    assert all("transcript" not in e for e in _extras(never).values())
    assert main([*argv, str(auto), "--transcribe", "auto"]) == 0
    assert report()["transcribed"] == 1
    extras = _extras(auto)
    assert "guitar" in extras["guitar.wav"]["transcript"].lower()
    assert "transcript" not in extras["chirp.wav"]
