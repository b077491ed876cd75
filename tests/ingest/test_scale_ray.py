"""Scale-out: the Ray engine gives what the single-process ingest gives (items, metadata,
vectors, bad-file report, resume), writes Milvus from its workers, and ``spaner embed``
writes Parquet. Ray runs locally, started here with 2 CPUs."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from spaner.index import open_store

from spaner.cli.main import main
from spaner.errors import ConfigError
from spaner.ingest import RayOptions, embed, ingest
from spaner.ingest.parquet import read_embeddings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip(
        "ray", reason="the ray extra is not installed: pip install 'spaner[ray]'"
    )
    pytest.importorskip(
        "pyarrow", reason="the ray extra is not installed: pip install 'spaner[ray]'"
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spaner.pipeline import Spaner

    return Spaner.from_profile("tiny").save(tmp_path_factory.mktemp("ckpt") / "tiny")


def _wav(seconds: float = 0.2, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest of text/image/audio items plus loose files: good ones, a copy of one
    (skipped as already taken), two copies of one corrupt file (both reported), and bad
    files of every kind."""
    from spaner.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("collection")
    manifest = make_synthetic(root / "set", concepts=3, per_concept=2, seed=7)
    loose = root / "loose"
    loose.mkdir()
    first_png = sorted((manifest.parent / "images").iterdir())[0]
    shutil.copy(first_png, loose / "copy_of_first.png")
    (loose / "note.txt").write_text("a loose note about seven\n")
    (loose / "tone.wav").write_bytes(_wav())
    corrupt = b"\x89PNG\r\n\x1a\n" + os.urandom(300)
    (loose / "corrupt_a.png").write_bytes(corrupt)
    (loose / "corrupt_b.png").write_bytes(corrupt)
    (loose / "truncated.wav").write_bytes(_wav()[:-2000])
    (loose / "empty.txt").write_text("  \n")
    (loose / "fake.jpg").write_text("not a jpeg")
    (loose / "blob.bin").write_bytes(os.urandom(100))
    return root


def _items(store_dir: Path) -> dict[str, tuple[dict, np.ndarray]]:
    """content hash -> (metadata without the id, vector)"""
    with open_store(store_dir, None) as store:
        ids = store.ids().tolist()
        metas = store.get(ids)
        vecs = store.vectors(ids)
        assert store.stats()["index_count"] == store.count() == len(ids)
    out = {}
    for m, v in zip(metas, vecs, strict=True):
        m = {k: m[k] for k in ("modality", "source", "concept", "content_hash", "extra")}
        out[m["content_hash"]] = (m, v)
    return out


def _problems(rep) -> list[tuple[str, str, str]]:
    return sorted((p.source, p.problem, p.kind) for p in rep.bad + rep.unknown)


def test_ray_ingest_matches_the_local_one(
    tmp_path, ray_local, checkpoint, collection, capsys
) -> None:
    paths = [collection / "set", collection / "loose"]
    local = ingest(paths, tmp_path / "local", checkpoint=checkpoint, batch_size=4)
    remote = ingest(
        paths,
        tmp_path / "ray",
        checkpoint=checkpoint,
        batch_size=4,
        engine="ray",
        ray=RayOptions(workers=2),
    )
    names = {Path(p.source).name for p in local.bad}
    assert {"corrupt_a.png", "corrupt_b.png", "truncated.wav", "empty.txt", "fake.jpg"} <= names
    # files seen twice (the manifest lists the files the folder walk also finds), the copy
    assert local.added > 10 and local.skipped_present >= 1
    for key in ("seen", "added", "added_by_modality", "skipped_present", "store_count"):
        assert getattr(remote, key) == getattr(local, key), key
    assert _problems(remote) == _problems(local)
    a, b = _items(tmp_path / "local"), _items(tmp_path / "ray")
    assert set(a) == set(b) and len(a) == local.added
    worst = 0.0
    for h, (meta, vec) in a.items():
        assert b[h][0] == meta
        worst = max(worst, float(np.abs(b[h][1] - vec).max()))
    assert worst <= 1e-6, worst
    # the second run, through the command line: nothing new; the bad files reported again
    code = main(
        ["ingest", *map(str, paths), "--store", str(tmp_path / "ray"), "--batch-size", "4"]
        + ["--engine", "ray", "--workers", "2", "--json"]
    )
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1  # some inputs were bad
    assert again["added"] == 0
    assert again["skipped_present"] == local.added + local.skipped_present
    assert sorted((p["source"], p["problem"], p["kind"]) for p in again["problems"]) == (
        _problems(local)
    )


def test_ray_workers_write_milvus(tmp_path, ray_local, checkpoint, collection, monkeypatch) -> None:
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed")
    pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")
    from spaner.index.milvus_store import MilvusStore

    def driver_must_not_write(self, ids, vectors, **kw):
        raise AssertionError("the driver wrote vectors to Milvus; the workers should")

    store_dir = tmp_path / "milvus"
    # the driver process may not insert vectors: only the Ray workers do (separate processes)
    monkeypatch.setattr(MilvusStore, "_index_add", driver_must_not_write)
    rep = ingest(
        [collection / "set", collection / "loose"],
        store_dir,
        checkpoint=checkpoint,
        backend="milvus",
        batch_size=4,
        engine="ray",
        ray=RayOptions(workers=2),
    )
    assert rep.added > 10
    monkeypatch.undo()
    with open_store(store_dir, None) as store:
        assert store.backend == "milvus"
        assert store.last_repair.clean, vars(store.last_repair)  # nothing to replay or resync
        ids = store.ids().tolist()
        assert len(ids) == rep.added == store.stats()["index_count"]
        vecs = store.vectors(ids)
        hits = store.search(vecs, 1)
        assert [h[0].id for h in hits] == ids  # every item is in Milvus and finds itself


def test_embed_writes_parquet_and_resumes(
    tmp_path, ray_local, checkpoint, collection, capsys
) -> None:
    import pyarrow as pa

    paths = [collection / "set", collection / "loose"]
    local = embed(paths, checkpoint, tmp_path / "local", batch_size=4, rows_per_file=7)
    code = main(
        ["embed", *map(str, paths), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "ray")]
        + ["--batch-size", "4", "--engine", "ray", "--workers", "1", "--json"]
    )
    remote = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1 and remote["added"] == local.added
    assert sorted((p["source"], p["problem"], p["kind"]) for p in remote["problems"]) == (
        _problems(local)
    )
    ta, tb = read_embeddings(tmp_path / "local"), read_embeddings(tmp_path / "ray")
    assert len(list((tmp_path / "local").glob("part-*.parquet"))) == -(-local.added // 7)
    assert ta.schema.field("vector").type == pa.list_(pa.float32(), 32)
    assert ta.num_rows == tb.num_rows == local.added
    assert sorted(ta.column("id").to_pylist()) == list(range(ta.num_rows))
    rows_a = {r["content_hash"]: r for r in ta.to_pylist()}
    rows_b = {r["content_hash"]: r for r in tb.to_pylist()}
    assert set(rows_a) == set(rows_b)
    for h, r in rows_a.items():
        for k in ("modality", "source", "concept", "extra"):
            assert rows_b[h][k] == r[k]
        v = np.asarray(r["vector"], np.float32)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
        assert np.abs(np.asarray(rows_b[h]["vector"], np.float32) - v).max() <= 1e-6
    # a run over a bigger collection embeds only what is missing, ids continue
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "new.txt").write_text("a brand new note")
    more = embed([*paths, extra], checkpoint, tmp_path / "local", batch_size=4, rows_per_file=7)
    assert more.added == 1 and more.skipped_present == local.added + local.skipped_present
    tc = read_embeddings(tmp_path / "local")
    assert tc.num_rows == local.added + 1 and max(tc.column("id").to_pylist()) == local.added
    ingested = ingest(paths, tmp_path / "store", checkpoint=checkpoint, batch_size=4)
    stored = _items(tmp_path / "store")  # the same vectors as the store's
    for h, r in rows_a.items():
        assert np.abs(stored[h][1] - np.asarray(r["vector"], np.float32)).max() <= 1e-6
    assert ingested.added == local.added


def test_engine_ray_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ConfigError, match=r"pip install 'spaner\[ray\]'"):
        ingest([tmp_path], tmp_path / "store", profile="tiny", engine="ray")
    assert not (tmp_path / "store").exists()  # refused before a store was made
    code = main(["ingest", str(tmp_path), "--store", str(tmp_path / "s"), "--engine", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'spaner[ray]'" in err[0]
