"""benchmarks/queries.py's core on a tiny synthetic collection held out by concept: the report's
shape, and that a stored text typed as it is comes first with the hybrid ranking on."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "queries.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("queries_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["queries_bench"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def concept_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 colour concepts: 3 train, 1 val, 2 test (whole concepts held out)."""
    from spaner.datasets.synthetic import make_synthetic

    manifest = make_synthetic(
        tmp_path_factory.mktemp("queries"), concepts=6, per_concept=4, paired=False, seed=0
    )
    split = {"red": "train", "green": "train", "blue": "train", "yellow": "val"}
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows = [{**r, "split": split.get(r["concept"], "test")} for r in rows]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


@pytest.mark.slow
@pytest.mark.precision("fp32")
def test_report_shape_and_exact_first(concept_split: Path, tmp_path: Path) -> None:
    bench = _load_script()
    report = bench.run_benchmark(
        concept_split,
        {"held-out": concept_split, "served": concept_split},
        "test",
        "tiny",
        {"shots": 2, "epochs": 2, "val_every": 2, "phrasings": 2},
        tmp_path,
        voices=(),
    )
    json.loads(json.dumps(report))  # one JSON object
    assert report["concepts"] == 2 and report["split"] == "test"
    assert {"bare noun", "label"} <= set(report["families"])
    assert "numeral" in report["skipped"] and "spoken eSpeak" in report["skipped"]
    rows = report["results"]
    settings = {(r["setting"], r["method"], r["hybrid"]) for r in rows}
    assert settings == {
        (s, m, h)
        for s in ("held-out", "served")
        for m in ("linear", "spaner")
        for h in (True, False)
    }
    for r in rows:
        assert r["queries"] > 0
        for target in ("photo", "sound", "text"):
            if target in r:
                assert set(r[target]) == {"n", "R@1", "R@10"} and r[target]["n"] > 0
                assert 0.0 <= r[target]["R@1"] <= r[target]["R@10"] <= 1.0
        if r["family"] == "label":
            assert "photo" in r and r["exact_first"] is not None
            if r["hybrid"]:
                assert r["exact_first"] == 1.0, r
    assert "features: encode the collection" in report["timings_s"]
    table = bench.format_table(report)
    assert table.startswith("| family |") and "| label |" in table
