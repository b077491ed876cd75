"""One instance per frozen encoder inside a shared_encoders block, new instances outside it."""

from __future__ import annotations

import threading

from spaner.encoders import registry

from spaner.model import shared_encoders as shared
from spaner.model.shared_encoders import shared_encoders
from spaner.pipeline import Spaner, build_encoders

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


def test_threads_building_the_same_encoder_build_it_once(monkeypatch) -> None:
    built: list[str] = []
    real = registry.build_encoder

    def counting_build(name: str, **kw):
        built.append(name)
        return real(name, **kw)

    monkeypatch.setattr(shared, "build_encoder", counting_build)
    results: list[dict] = []
    with shared_encoders():
        threads = [
            threading.Thread(target=lambda: results.append(build_encoders(CHOICE)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 3  # every thread got its encoders
    assert sorted(built) == ["tiny-clip-image", "tiny-clip-text"]  # once each, not three times
    assert all(r["text"] is results[0]["text"] for r in results)
