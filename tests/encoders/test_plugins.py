"""Encoder registry and entry-point plugins, end to end (train the plugin's aligner, search)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from spaner.encoders import (
    EncoderSpec,
    build_encoder,
    get_spec,
    list_encoders,
    plugin_errors,
    register_encoder,
    reload_plugins,
    unregister_encoder,
)

from spaner.errors import ConfigError
from spaner.evaluation.compare import evaluate_model
from spaner.model.config import TrainConfig

PLUGIN_DIR = Path(__file__).parents[1] / "plugins"


def _install_entry_points(site: Path, entries: dict[str, str]) -> None:
    """Write a dist-info with entry points, as `pip install` of a plugin package would."""
    dist = site / "spaner_toy_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: spaner-toy-plugin\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[spaner.encoders]\n{lines}\n")


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_entry_points(
        site, {"toy": "spaner_toy:specs", "broken": "spaner_toy_missing_module:specs"}
    )
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    reload_plugins()
    yield
    monkeypatch.undo()
    importlib.invalidate_caches()
    unregister_encoder("toy-sensor")
    sys.modules.pop("spaner_toy", None)
    reload_plugins()


def test_builtins_cover_text_image_audio():
    mods = {s.modality for s in list_encoders()}
    assert {"text", "image", "audio"} <= mods
    assert get_spec("tiny-clip-image").width == 64


def test_register_duplicate_name_is_refused():
    spec = EncoderSpec("dup-test", "text", 8, "none", factory=lambda **kw: None)
    register_encoder(spec)
    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_encoder(EncoderSpec("dup-test", "text", 8, "none", factory=lambda **kw: None))
    finally:
        unregister_encoder("dup-test")


def test_unknown_encoder_lists_known_ones():
    with pytest.raises(ConfigError, match="tiny-clip-text"):
        get_spec("no-such-encoder")


def test_entry_point_plugin_is_discovered_and_broken_one_reported(toy_plugin):
    spec = get_spec("toy-sensor")
    assert spec.modality == "sensor" and spec.source.startswith("plugin:")
    assert "broken" in plugin_errors()
    assert get_spec("tiny-clip-text").modality == "text"  # built-ins unaffected
    enc = build_encoder("toy-sensor")
    batch = enc.encode([b"1,2,3,4\n5,6,7,8\n"])
    assert batch.tokens.shape == (1, 2, 4) and batch.mask.all()


def _sensor_manifest(root: Path, seed: int) -> Path:
    """The synthetic colour set (text + image lines) with a sensor recording added to each line;
    each concept has a characteristic sensor signature."""
    from spaner.datasets.synthetic import make_synthetic

    manifest = make_synthetic(
        root,
        concepts=10,
        per_concept=8,
        paired=True,
        modalities=("text", "image"),
        test_fraction=0.375,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    protos: dict[str, np.ndarray] = {}
    (root / "sensor").mkdir(exist_ok=True)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    for line in lines:
        proto = protos.setdefault(line["concept"], rng.normal(0, 1, 4))
        rows = proto + rng.normal(0, 0.3, (6, 4))
        rel = f"sensor/{line['id']}.csv"
        (root / rel).write_text("\n".join(",".join(f"{v:.4f}" for v in r) for r in rows))
        line["sensor"] = rel
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


@pytest.mark.slow
def test_plugin_modality_trains_its_aligner_and_searches(toy_plugin, tmp_path, paired_set):
    from spaner.pipeline import Spaner

    # a text+image model first, then plug the sensor modality in and train only its aligner
    sp = Spaner.from_profile(
        "tiny", modalities=["text", "image"], encoders={"text": "tiny-bert-text"}
    )
    # lr pinned as in test_training: the default (3e-4) is tuned for the digits benchmark's
    # 200-epoch schedule, and these short tiny-preset runs need a higher peak
    cfg = TrainConfig(shots=5, epochs=40, seed=0, lr=2e-3)
    sp.fit(paired_set, cfg, progress=False)
    manifest = _sensor_manifest(tmp_path / "sensor_set", seed=3)
    probe = [str(p) for p in sorted((manifest.parent / "images").glob("*.png"))[:12]]
    image_before = sp.embed("image", probe)
    sp.extend(
        "sensor",
        manifest,
        TrainConfig(shots=5, epochs=60, seed=0, lr=2e-3),
        encoder="toy-sensor",
        progress=False,
    )
    assert np.array_equal(image_before, sp.embed("image", probe))  # other modalities untouched
    # search: held-out sensor recordings retrieve images of their concept (chance 0.1)
    data = sp.prepare(manifest, TrainConfig(shots=5, seed=0))
    retrieval, _ = evaluate_model(sp.model, data.test)
    assert retrieval["sensor->image"]["R@1"] >= 0.8, retrieval
    queries = [
        str(manifest.parent / "sensor" / f"{i}.csv") for i in data.test.modalities["sensor"].ids[:2]
    ]
    zq = sp.embed("sensor", queries)
    # the plugin modality survives a save/load round trip through the registry
    sp.save(tmp_path / "ckpt")
    again = Spaner.load(tmp_path / "ckpt")
    assert np.allclose(again.embed("sensor", [str(queries[0])]), zq[:1], atol=1e-6)
