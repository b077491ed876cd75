"""``spaner search`` and ``spaner delete`` on a small ingested store (in-process CLI)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from spaner.index import open_store

from spaner.cli.main import main
from spaner.ingest import ingest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A store of 3 concepts x 2 items per modality, made with --profile tiny."""
    from spaner.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("search")
    manifest = make_synthetic(root / "data", concepts=3, per_concept=2, seed=7)
    store = root / "store"
    rep = ingest([manifest], store, profile="tiny")
    assert rep.added > 0 and rep.skipped == 0
    return {"store": store, "manifest": manifest, "data": manifest.parent, "added": rep.added}


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _copy_store(built: dict, tmp_path: Path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(built["store"], dst)
    return dst


def test_search_text_table(built, capsys) -> None:
    rc = main(["search", "--store", str(built["store"]), "--text", "seven", "-k", "5", "-q"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].split()[:6] == ["rank", "id", "relevance", "score", "modality", "concept"]
    assert len(out) == 6 and out[1].split()[0] == "1"


def test_search_json_shape_and_k(built, capsys) -> None:
    rc = main(
        ["search", "--store", str(built["store"]), "--text", "red", "-k", "4", "--json", "-q"]
    )
    doc = _json(capsys)
    assert rc == 0
    assert doc["k"] == 4 and doc["query"] == [{"modality": "text", "value": "red"}]
    assert doc["filter"] is None
    assert [r["rank"] for r in doc["results"]] == [1, 2, 3, 4]
    first = doc["results"][0]
    assert set(first) == {
        "rank",
        "id",
        "score",
        "relevance",
        "lexical",
        "modality",
        "concept",
        "source",
        "snippet",
        "extra",
    }
    assert first["relevance"] is None  # an untrained model has no score calibration
    # vectors alone rank by cosine (hybrid fuses the full-text ranks in: tests/search/test_hybrid.py)
    main(
        [
            "search",
            "--store",
            str(built["store"]),
            "--text",
            "red",
            "-k",
            "4",
            "--json",
            "-q",
            "--no-hybrid",
        ]
    )
    scores = [r["score"] for r in _json(capsys)["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_by_image_and_by_several_examples(built, capsys) -> None:
    images = sorted((built["data"] / "images").iterdir())
    rc = main(
        [
            "search",
            "--store",
            str(built["store"]),
            "--image",
            str(images[0]),
            "-k",
            "3",
            "--json",
            "-q",
        ]
    )
    doc = _json(capsys)
    assert rc == 0
    top = doc["results"][0]
    assert top["modality"] == "image" and top["source"] == str(images[0].resolve())
    assert top["score"] == pytest.approx(1.0, abs=1e-4)  # the query itself is stored
    rc = main(
        [
            "search",
            "--store",
            str(built["store"]),
            "--image",
            str(images[0]),
            "--image",
            str(images[1]),
            "--text",
            "a red picture",
            "-k",
            "3",
            "--json",
            "-q",
        ]
    )
    doc = _json(capsys)
    assert rc == 0 and len(doc["query"]) == 3 and len(doc["results"]) == 3


def test_search_filters(built, capsys) -> None:
    store = str(built["store"])
    main(
        [
            "search",
            "--store",
            store,
            "--text",
            "red",
            "-k",
            "50",
            "--modality",
            "image,audio",
            "--json",
            "-q",
        ]
    )
    doc = _json(capsys)
    mods = {r["modality"] for r in doc["results"]}
    assert mods == {"image", "audio"}
    with open_store(built["store"], None) as s:
        assert len(doc["results"]) == len(s.ids()) - s.stats()["by_modality"]["text"]
    concept = doc["results"][0]["concept"]
    main(
        [
            "search",
            "--store",
            store,
            "--text",
            "red",
            "-k",
            "50",
            "--concept",
            concept,
            "--json",
            "-q",
        ]
    )
    doc = _json(capsys)
    assert doc["results"] and {r["concept"] for r in doc["results"]} == {concept}
    src = doc["results"][0]["source"]
    main(["search", "--store", store, "--text", "red", "--where", f"source={src}", "--json", "-q"])
    doc = _json(capsys)
    assert [r["source"] for r in doc["results"]] == [src]


def test_delete_cli(built, tmp_path, capsys) -> None:
    store = _copy_store(built, tmp_path)
    with open_store(store, None) as s:
        ids = s.ids().tolist()
        image_id = next(i for i in ids if s.get([i])[0]["modality"] == "image")
        source = s.get([image_id])[0]["source"]
        other = next(i for i in ids if i != image_id)
    rc = main(["delete", "--store", str(store), str(other), "999999", "--json", "-q"])
    doc = _json(capsys)
    assert rc == 0 and doc["deleted"] == 1 and doc["unknown_ids"] == [999999]
    rc = main(["delete", "--store", str(store), "--source", source, "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "deleted 1 items" in out
    with open_store(store, None) as s:
        left = s.ids().tolist()
        assert other not in left and image_id not in left and len(left) == len(ids) - 2
    # deleted items never come back from search, even right after reopening
    main(["search", "--store", str(store), "--text", "red", "-k", "100", "--json", "-q"])
    got = {r["id"] for r in _json(capsys)["results"]}
    assert got == set(left)
    rc = main(["delete", "--store", str(store), "123456", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown id: 123456" in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["search", "--store", "{missing}", "--text", "a"], "not a vector store"),
        (["search", "--store", "{store}", "--image", "{missing}/q.png"], "not found"),
        (["search", "--store", "{store}"], "no query given"),
        (["search", "--store", "{store}", "--text", "a", "-k", "0"], "-k must be"),
        (["search", "--store", "{store}", "--text", "a", "--where", "nokey"], "KEY=VALUE"),
        (["delete", "--store", "{missing}", "1"], "not a vector store"),
        (["delete", "--store", "{store}"], "nothing to delete"),
        (["ingest", "{store}", "--store", "{store}", "--profile", "offline"], "profile"),
    ],
)
def test_error_paths_exit_2_with_one_line(built, tmp_path, capsys, argv, needle) -> None:
    args = [a.format(store=built["store"], missing=tmp_path / "nope") for a in argv]
    rc = main([*args, "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and needle in err, err


def test_search_refuses_another_checkpoint(built, tmp_path, capsys) -> None:
    from spaner.pipeline import Spaner

    other = Spaner.load(built["store"] / "checkpoint").save(tmp_path / "other", extra={"x": 1})
    rc = main(
        ["search", "--store", str(built["store"]), "--text", "a", "--checkpoint", str(other), "-q"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "embedding space mismatch" in err


def test_search_group_by_modality(built, capsys) -> None:
    store = str(built["store"])
    args = ["search", "--store", store, "--text", "red", "-k", "2", "-q"]
    rc = main([*args, "--group-by", "modality", "--json"])
    doc = _json(capsys)
    assert rc == 0 and doc["group_by"] == "modality"
    assert set(doc["groups"]) == {"text", "image", "audio"}
    for modality, rows in doc["groups"].items():
        assert [r["rank"] for r in rows] == [1, 2]
        assert {r["modality"] for r in rows} == {modality}
        main([*args, "--modality", modality, "--json"])
        alone = _json(capsys)
        assert [r["id"] for r in rows] == [r["id"] for r in alone["results"]]
    main([*args, "--json"])
    assert doc["results"] == _json(capsys)["results"]  # the mixed ranking stays in "results"
    rc = main([*args, "--group-by", "modality", "--modality", "audio,image"])
    out = capsys.readouterr().out
    assert rc == 0 and out.index("== audio ==") < out.index("== image ==")
    assert "== text ==" not in out and out.count("\n") == 2 * (1 + 1 + 2)


def test_search_group_by_rejects_other_keys(built, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", "--store", str(built["store"]), "--text", "a", "--group-by", "concept"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_search_ranks_by_the_checkpoints_calibration(built, tmp_path, capsys) -> None:
    """A checkpoint with calibration.json: the mixed results follow the calibrated relevance
    (here set so that every image outranks every text), `score` stays the raw cosine."""
    from spaner.ingest.binding import _recorded_checkpoint
    from spaner.search.calibration import Calibration, PairCalibration

    store = _copy_store(built, tmp_path)
    ckpt = _recorded_checkpoint(store)
    assert ckpt is not None and not (ckpt / "calibration.json").exists()  # untrained: none
    args = ["search", "--store", str(store), "--text", "red", "-k", "6", "--json", "-q"]
    main(args)
    raw = _json(capsys)["results"]
    assert raw[0]["modality"] == "text" and raw[0]["relevance"] is None
    cal = Calibration(
        "platt",
        {"text->image": PairCalibration(1.0, 50.0), "text->text": PairCalibration(1.0, 0.0)},
    )
    cal.save(ckpt)  # the store is a copy: its model gains a calibration
    rc = main([*args, "--modality", "image,text"])
    res = _json(capsys)["results"]
    assert rc == 0
    mods = [r["modality"] for r in res]
    assert mods == sorted(mods, key=["image", "text"].index) and mods[0] == "image"
    rel = [r["relevance"] for r in res]
    assert rel == sorted(rel, reverse=True) and all(0 <= p <= 1 for p in rel)
    images = [r["score"] for r in res if r["modality"] == "image"]
    assert images == sorted(images, reverse=True)
