"""Ingest pipeline: folders, manifests, resumability, bad inputs, space refusal, SIGKILL."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from spaner.index import SpaceMismatchError, content_sha256, open_store

from spaner.cli.main import main
from spaner.errors import ConfigError
from spaner.ingest import ingest
from spaner.ingest.sources import sniff_modality

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny checkpoints of different spaces (same weights, different records)."""
    from spaner.pipeline import Spaner

    root = tmp_path_factory.mktemp("ckpt")
    sp = Spaner.from_profile("tiny")
    return sp.save(root / "a"), sp.save(root / "b", extra={"note": "another model"})


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 concepts x 2 items per modality, one modality per manifest line."""
    from spaner.datasets.synthetic import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("small"), concepts=3, per_concept=2, seed=3)


def _lines(manifest: Path) -> list[dict]:
    return [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]


def _wav_bytes(seconds: float = 0.2, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def test_sniffing() -> None:
    assert sniff_modality(b"\x89PNG\r\n\x1a\n" + bytes(8)) == "image"
    assert sniff_modality(b"\xff\xd8\xff\xe0" + bytes(8)) == "image"
    assert sniff_modality(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image"
    assert sniff_modality(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio"
    assert sniff_modality(b"fLaC" + bytes(8)) == "audio"
    assert sniff_modality(b"ID3\x03" + bytes(8)) == "audio"
    assert sniff_modality(b"\xff\xfb\x90\x00" + bytes(8)) == "audio"
    assert sniff_modality(b"hello world, plain") is None


def test_manifest_ingest_counts_concepts_content_and_resume(
    tmp_path, checkpoints, small_set
) -> None:
    store_dir = tmp_path / "store"
    rep = ingest([small_set], store_dir, checkpoint=checkpoints[0], batch_size=4)
    lines = _lines(small_set)
    by_mod: dict[str, set[str]] = {}
    for ln in lines:
        for m in ("text", "image", "audio"):
            if m in ln:
                value = ln[m] if m == "text" else (small_set.parent / ln[m]).read_bytes()
                by_mod.setdefault(m, set()).add(content_sha256(value))
    assert rep.added_by_modality == {m: len(h) for m, h in by_mod.items()}
    assert rep.skipped == 0 and rep.created
    assert set(rep.stage_seconds) == {"read", "decode", "encode", "write"}
    with open_store(store_dir, None) as store:
        assert store.count() == sum(len(h) for h in by_mod.values())
        concept_of = {ln["id"]: ln["concept"] for ln in lines}
        for i in store.ids().tolist():
            meta = store.get([i])[0]
            assert meta["concept"] == concept_of[meta["extra"]["manifest_id"]]
            content = store.content(i)
            if meta["modality"] == "text":
                assert isinstance(content, str) and content.strip()
            else:
                assert content == Path(meta["source"]).read_bytes()
    # the second run (the folder itself: manifest + the files it lists) adds nothing
    again = ingest([small_set.parent], store_dir, batch_size=4)
    assert again.added == 0 and not again.created
    assert again.skipped_present >= rep.added
    assert again.store_count == rep.store_count


def test_folder_ingest_detects_modalities(tmp_path, checkpoints, small_set) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_set.parent / "images", data / "pics")
    shutil.copytree(small_set.parent / "audio", data / "sounds" / "deeper")
    (data / "notes").mkdir()
    (data / "notes" / "a.txt").write_text("a red square\n")
    (data / "notes" / "b.md").write_text("# blue\nsomething blue")
    rep = ingest([data], tmp_path / "store", checkpoint=checkpoints[0], concept="mixed")
    n_img = len(list((small_set.parent / "images").iterdir()))
    n_aud = len(list((small_set.parent / "audio").iterdir()))
    assert rep.added_by_modality == {"image": n_img, "audio": n_aud, "text": 2}
    with open_store(tmp_path / "store", None) as store:
        assert store.stats()["by_concept"] == {"mixed": n_img + n_aud + 2}


def test_bad_files_are_reported_and_skipped(tmp_path, checkpoints, small_set) -> None:
    data = tmp_path / "data"
    data.mkdir()
    good_png = next((small_set.parent / "images").iterdir())
    shutil.copy(good_png, data / "good.png")
    (data / "good.wav").write_bytes(_wav_bytes())
    (data / "good.txt").write_text("seven")
    (data / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (data / "truncated.wav").write_bytes(_wav_bytes()[:-2000])
    (data / "blob.bin").write_bytes(os.urandom(300))
    (data / "empty.txt").write_text("   \n")
    (data / "fake.jpg").write_text("not really a jpeg")
    rep = ingest([data], tmp_path / "store", checkpoint=checkpoints[0])
    assert rep.added_by_modality == {"image": 1, "audio": 1, "text": 1}
    bad = {Path(p.source).name: p.problem for p in rep.bad}
    assert set(bad) == {"corrupt.png", "truncated.wav", "empty.txt", "fake.jpg"}, bad
    assert "trunc" in bad["truncated.wav"].lower()
    assert [Path(p.source).name for p in rep.unknown] == ["blob.bin"]
    assert rep.skipped == 5
    assert all(str(data) in p.source for p in rep.bad + rep.unknown)


def test_manifest_bad_lines_are_skipped(tmp_path, checkpoints, small_set) -> None:
    root = tmp_path / "m"
    shutil.copytree(small_set.parent / "images", root / "images")
    img = sorted((root / "images").iterdir())[0].name
    (tmp_path / "secret.png").write_bytes(good := (root / "images" / img).read_bytes())
    assert good
    lines = [
        {"id": "ok1", "concept": "red", "image": f"images/{img}", "text": "a red thing"},
        {"id": "evil", "image": "../secret.png"},
        {"id": "abs", "image": str(tmp_path / "secret.png")},
        {"id": "gone", "image": "images/missing.png"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{not json\n"
    (root / "items.jsonl").write_text(text)
    rep = ingest([root / "items.jsonl"], tmp_path / "store", checkpoint=checkpoints[0])
    assert rep.added == 2
    problems = {p.source.rsplit(":", 1)[1]: p.problem for p in rep.bad}
    assert set(problems) == {"2", "3", "4", "5"}
    assert "escapes" in problems["2"] and "escapes" in problems["3"]
    assert "not found" in problems["4"] and "JSON" in problems["5"]


def test_symlinks_escaping_roots_are_not_followed(tmp_path, checkpoints, small_set) -> None:
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "outside"
    shutil.copytree(small_set.parent / "images", outside)
    (data / "inside.txt").write_text("seven")
    (data / "link_dir").symlink_to(outside, target_is_directory=True)
    (data / "link_in.txt").symlink_to(data / "inside.txt")
    rep = ingest([data], tmp_path / "store", checkpoint=checkpoints[0])
    assert rep.added == 1 and rep.skipped_present == 1  # the inside link is the same text
    assert [Path(p.source).name for p in rep.bad] == ["link_dir"]


def test_other_checkpoint_is_refused(tmp_path, checkpoints, small_set) -> None:
    store_dir = tmp_path / "store"
    ingest([small_set.parent / "images"], store_dir, checkpoint=checkpoints[0])
    with pytest.raises(SpaceMismatchError):
        ingest([small_set.parent / "audio"], store_dir, checkpoint=checkpoints[1])
    rc = main(
        [
            "ingest",
            str(small_set.parent / "audio"),
            "--store",
            str(store_dir),
            "--checkpoint",
            str(checkpoints[1]),
            "-q",
        ]
    )
    assert rc == 2


def test_cli_ingest_profile_json_and_exit_codes(tmp_path, small_set, capsys) -> None:
    store_dir = tmp_path / "store"
    rc = main(
        [
            "ingest",
            str(small_set.parent / "images"),
            "--store",
            str(store_dir),
            "--profile",
            "tiny",
            "--json",
            "-q",
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["added_by_modality"] == {"image": 6} and out["created"]
    assert (store_dir / "checkpoint" / "config.json").is_file()
    bind = json.loads((store_dir / "spaner.json").read_text())
    assert bind["checkpoint"] == "checkpoint" and bind["profile"] == "tiny"
    # later runs use the recorded model; a bad file makes the exit status 1
    (tmp_path / "x.txt").write_text("")
    rc = main(
        [
            "ingest",
            str(tmp_path / "x.txt"),
            str(small_set.parent / "audio"),
            "--store",
            str(store_dir),
            "-q",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "x.txt" in captured.err and "skipped: 1 bad" in captured.out
    with pytest.raises(ConfigError, match="--checkpoint"):  # the CLI defaults to offline
        ingest([small_set.parent], tmp_path / "new")


@pytest.mark.slow
def test_sigkill_mid_ingest_then_resume(tmp_path, checkpoints) -> None:
    from spaner.datasets.synthetic import make_synthetic

    manifest = make_synthetic(tmp_path / "data", concepts=6, per_concept=4, seed=5)
    store_dir = tmp_path / "store"
    # The writer reports each store write once it returned and waits, after the fourth,
    # for the kill, which is sent on the third report: the kill point is the writer's
    # progress (3-4 batches of 2 written), the same on a fast and on a slow machine.
    code = (
        "import threading\n"
        "import spaner.index.backed_store as bs\n"
        "orig = bs.MetadataBackedStore.add\n"
        "done = []\n"
        "def reporting_add(self, *a, **k):\n"
        "    out = orig(self, *a, **k)\n"
        "    done.append(1)\n"
        "    print('ACK', len(done), flush=True)\n"
        "    if len(done) > 3:\n"
        "        threading.Event().wait()\n"
        "    return out\n"
        "bs.MetadataBackedStore.add = reporting_add\n"
        "from spaner.ingest import ingest\n"
        f"ingest([{str(manifest)!r}], {str(store_dir)!r}, checkpoint={str(checkpoints[0])!r}, batch_size=2)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    acks = 0
    try:
        while acks < 3 and (line := proc.stdout.readline()):
            acks += line.startswith("ACK ")
        assert acks == 3 and proc.poll() is None, "the ingest finished before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    con = sqlite3.connect(f"file:{store_dir / 'metadata.sqlite'}?mode=ro", uri=True)
    try:
        n = con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    finally:
        con.close()
    assert n >= 6  # the three acknowledged batches of 2 survived the kill
    rep = ingest([manifest], store_dir, batch_size=8)
    assert rep.skipped_present >= n and rep.added > 0
    with open_store(store_dir, None) as store:
        hashes = [store.get([i])[0]["content_hash"] for i in store.ids().tolist()]
        assert store.stats()["index_count"] == store.count()
    assert len(hashes) == len(set(hashes))  # every item exactly once
    expected = set()
    for ln in _lines(manifest):
        for m in ("text", "image", "audio"):
            if m in ln:
                expected.add(
                    content_sha256(ln[m] if m == "text" else (manifest.parent / ln[m]).read_bytes())
                )
    assert set(hashes) == expected


@pytest.mark.slow
def test_ingest_and_search_on_milvus_lite(tmp_path, checkpoints, small_set) -> None:
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    store_dir = tmp_path / "store"
    rep = ingest([small_set], store_dir, checkpoint=checkpoints[0], backend="milvus")
    assert rep.added > 0 and rep.skipped == 0
    again = ingest([small_set], store_dir)
    assert again.added == 0 and again.skipped_present == rep.added
    with open_store(store_dir, None) as store:
        assert store.backend == "milvus" and store.count() == rep.added
        vec = store.vectors([0])
        hits = store.search(vec, 3)[0]
        assert hits[0].id == 0


def test_ingest_reuses_the_feature_cache_of_training(tmp_path, checkpoints, small_set) -> None:
    """With a feature cache (the demo's), ingest takes each input's frozen features from the
    cache where training left them and encodes (and caches) only the rest: the vectors equal
    those of the model on the cached features."""
    import torch

    from spaner.pipeline import Spaner
    from spaner.training.features import FeatureCache, content_hash, content_key

    sp = Spaner.load(checkpoints[0])
    cache = FeatureCache(tmp_path / "cache")
    texts = [ln for ln in _lines(small_set) if "text" in ln]
    first, second = texts[0]["text"], texts[1]["text"]
    enc = sp.encoders["text"]
    # cache the *second* text's features under the first's key: ingest must use the cache
    swapped = enc.encode([second]).split()[0]
    cache.put(enc, content_key(enc, first), swapped)
    rep = ingest([small_set], tmp_path / "store", checkpoint=checkpoints[0], feature_cache=cache)
    assert rep.skipped == 0
    with open_store(tmp_path / "store", None) as store:
        vec = {
            store.content(i): store.vectors([i])[0]
            for i in store.ids().tolist()
            if store.get([i])[0]["modality"] == "text"
        }
    with torch.no_grad():
        want = sp.model.embed("text", enc.encode([second])).numpy()[0]
        fresh = sp.model.embed("text", enc.encode([first])).numpy()[0]
    assert np.allclose(vec[first], want, atol=1e-5) and not np.allclose(
        vec[first], fresh, atol=1e-3
    )
    # every other input was encoded and is now in the cache, under the key training uses
    for ln in texts[1:]:
        assert cache.get(enc, content_key(enc, ln["text"])) is not None
    image = next(ln for ln in _lines(small_set) if "image" in ln)
    key = content_key(sp.encoders["image"], (small_set.parent / image["image"]).read_bytes())
    assert cache.get(sp.encoders["image"], key) is not None
    assert key == content_hash(sp.encoders["image"], str(small_set.parent / image["image"]))
    assert content_key(enc, first) == content_hash(enc, first)
