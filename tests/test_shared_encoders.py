"""One instance per frozen encoder inside a shared_encoders block, new instances outside it."""

from __future__ import annotations

import threading

import pytest
from spaner.encoders import registry

from spaner import shared_encoders as shared
from spaner.pipeline import Spaner, build_encoders
from spaner.shared_encoders import prebuild_encoders, shared_encoders

CHOICE = {"text": "tiny-clip-text", "image": "tiny-clip-image"}


def test_outside_a_block_every_call_builds_new_encoders() -> None:
    a, b = build_encoders(CHOICE), build_encoders(CHOICE)
    assert a["text"] is not b["text"] and a["image"] is not b["image"]


def test_inside_a_block_the_same_encoder_is_built_once() -> None:
    with shared_encoders():
        a = build_encoders(CHOICE)
        sp = Spaner.from_profile("tiny", modalities=["text", "image"])
        assert sp.encoders["text"] is a["text"] and sp.encoders["image"] is a["image"]
        with shared_encoders():  # a nested block shares the outer pool
            assert build_encoders(CHOICE)["text"] is a["text"]
        assert build_encoders(CHOICE)["text"] is a["text"]  # the nested block left the pool
    assert build_encoders(CHOICE)["text"] is not a["text"]  # the pool ended with the block


def test_other_options_build_another_instance() -> None:
    with shared_encoders():
        a = build_encoders({"audio": "tiny-wav2vec2-audio"})
        b = build_encoders({"audio": "tiny-wav2vec2-audio"}, {"audio": {"seed": 1}})
        assert a["audio"] is not b["audio"]


def test_prebuild_fills_the_pool_and_a_concurrent_build_waits_for_it(monkeypatch) -> None:
    built: list[str] = []
    release = threading.Event()
    real = registry.build_encoder

    def slow_build(name: str, **kw):
        built.append(name)
        if name == "tiny-clip-text":
            release.wait()  # the prebuild thread holds the pool while this one loads
        return real(name, **kw)

    monkeypatch.setattr(shared, "build_encoder", slow_build)
    assert prebuild_encoders(["tiny-clip-text"]) is None  # no pool: nothing to fill
    with shared_encoders():
        thread = prebuild_encoders(["tiny-clip-text", "tiny-clip-image"])
        assert thread is not None
        result: dict = {}
        waiter = threading.Thread(target=lambda: result.update(build_encoders(CHOICE)))
        waiter.start()
        release.set()
        thread.join()
        waiter.join()
        assert built == ["tiny-clip-text", "tiny-clip-image"]  # each built once, not twice
        assert result["text"] is build_encoders(CHOICE)["text"]


def test_a_failed_prebuild_is_reported_by_the_callers_own_build(monkeypatch) -> None:
    with shared_encoders():
        thread = prebuild_encoders(["no-such-encoder"])
        assert thread is not None
        thread.join()  # only logged there
        with pytest.raises(Exception, match="no-such-encoder"):
            build_encoders({"text": "no-such-encoder"})
