"""Manifest parsing: every error names the file and line."""

from __future__ import annotations

import json

import pytest

from spaner.errors import ConfigError, ManifestError
from spaner.training.data import sample_few_shot, split_manifest
from spaner.training.manifest import load_manifest


def _write(tmp_path, lines, name="m.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_valid_manifest(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    m = load_manifest(
        _write(tmp_path, [{"id": 1, "text": "hi", "image": "a.png", "concept": "c"}, ""])
    )
    assert m.items[0].id == "1" and m.items[0].fields["image"] == str(
        (tmp_path / "a.png").resolve()
    )
    assert m.modalities == ["text", "image"] and m.has_concepts


@pytest.mark.parametrize(
    "lines, problem, lineno",
    [
        (['{"id": "a", "text": "x"}', "{not json"], "not valid JSON", 2),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "duplicate id", 2),
        ([{"text": "x"}], "missing or invalid 'id'", 1),
        ([{"id": "a"}], "no modality field", 1),
        ([{"id": "a", "image": "missing.png"}], "file not found", 1),
        ([{"id": "a", "image": "../outside.png"}], "escapes the manifest", 1),
        ([{"id": "a", "image": "/etc/passwd"}], "absolute path", 1),
        ([{"id": "a", "text": "x", "split": "holdout"}], "'split' must be one of", 1),
        ([{"id": "a", "text": ""}], "non-empty string", 1),
        (["[1, 2]"], "must be a JSON object", 1),
    ],
)
def test_errors_name_file_and_line(tmp_path, lines, problem, lineno):
    path = _write(tmp_path, lines)
    with pytest.raises(ManifestError, match=problem) as err:
        load_manifest(path)
    assert f"{path}:{lineno}" in str(err.value)


def test_unknown_modality_when_restricted(tmp_path):
    path = _write(tmp_path, [{"id": "a", "text": "x", "smell": "rose.bin"}])
    with pytest.raises(ManifestError, match="unknown modality 'smell'"):
        load_manifest(path, modalities=["text", "image"], check_files=False)


def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "none.jsonl")
    with pytest.raises(ManifestError, match="no items"):
        load_manifest(_write(tmp_path, [""]))


def test_shots_sampling_is_per_concept_per_modality_and_seeded(trimodal_set):
    m = load_manifest(trimodal_set)
    splits = split_manifest(m)
    train, val = sample_few_shot(splits, shots=3, seed=0)
    counts = {}
    for it in train:
        for mod in it.fields:
            counts[(it.concept, mod)] = counts.get((it.concept, mod), 0) + 1
    assert set(counts.values()) == {3} and len(counts) == 30  # 10 concepts x 3 modalities
    assert not {i.id for i in train} & {i.id for i in val}
    assert not {i.id for i in train + val} & {i.id for i in splits.test}
    again, _ = sample_few_shot(splits, shots=3, seed=0)
    other, _ = sample_few_shot(splits, shots=3, seed=1)
    assert [i.id for i in train] == [i.id for i in again] and [i.id for i in train] != [
        i.id for i in other
    ]
    with pytest.raises(ConfigError, match="--fraction"):
        sample_few_shot(type(splits)(splits.train, [], [], "paired"), shots=2)
    few, _ = sample_few_shot(splits, fraction=0.25, seed=0)
    assert len(few) == round(len(splits.train) * 0.25)
