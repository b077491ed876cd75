"""benchmarks/sounds.py's helpers: which Tux Paint sounds count as environmental sounds, and the
few-shot split (shots and queries never from one original recording)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sounds.py"


def _load_script():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("sounds_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sounds_bench"] = module
    spec.loader.exec_module(module)
    return module


def _clip(cid: str, concept: str, group: str | None = None) -> dict:
    return {
        "id": cid,
        "concept": concept,
        "audio": f"/x/{cid}.ogg",
        "meta": {"group": group or cid},
    }


def test_environmental_leaves_speech_out() -> None:
    bench = _load_script()
    sound = {"audio": "a.ogg", "concept": "frog", "meta": {"kind": "sound", "category": "animals"}}
    assert bench.environmental(sound)
    assert not bench.environmental({**sound, "meta": {"kind": "speech", "category": "animals"}})
    letter = {**sound, "meta": {"kind": "sound", "category": "symbols/alphabets/german"}}
    assert not bench.environmental(letter)
    sentence = {**sound, "concept": "remember to flush the toilet and wash your hands"}
    assert not bench.environmental(sentence)
    assert not bench.environmental({"text": "A frog", "concept": "frog", "meta": {}})


def test_few_shot_split_keeps_originals_apart() -> None:
    bench = _load_script()
    clips = [_clip(f"dog{i}", "dog") for i in range(7)]
    clips += [_clip("cow-a", "cow", "one"), _clip("cow-b", "cow", "one"), _clip("cow-c", "cow")]
    clips += [_clip("owl", "owl")]  # one original: no query is possible, left out
    for k in (1, 5):
        for seed in (0, 1):
            shots, queries, classes = bench.few_shot_split(clips, k, seed)
            assert classes == ["cow", "dog"]
            per = {c: sum(s["concept"] == c for s in shots) for c in classes}
            assert per == {"cow": 1, "dog": min(k, 6)}
            shot_groups = {s["meta"]["group"] for s in shots}
            assert not shot_groups & {q["meta"]["group"] for q in queries}
            assert len(shots) + len(queries) <= len(clips) - 1
    a = bench.few_shot_split(clips, 5, 0)[0]
    assert a == bench.few_shot_split(clips, 5, 0)[0]  # seeded
