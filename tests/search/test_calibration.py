"""Search-time score calibration (spaner.search.calibration): fitting, monotonicity, the mixed pool,
saving/loading with a checkpoint, and the merged ranking (spaner.search.mixed)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from feature_sets import MODS
from feature_sets import labelled_feature_set as _fs

from spaner.errors import CheckpointError, ConfigError
from spaner.evaluation.metrics import calibrated_scores, mixed_pool_metrics
from spaner.model.config import TrainConfig
from spaner.pipeline import Spaner
from spaner.search.calibration import (
    CALIBRATION_NAME,
    METHODS,
    Calibration,
    PairCalibration,
    calibrate_model,
    fit_calibration,
    load_calibration,
)
from spaner.search.engine import rank
from spaner.search.hybrid import fuse
from spaner.search.mixed import query_weights
from spaner.training.data import FeatureSet, ModalityFeatures

TRI = {"text": "tiny-bert-text"}


def _gapped_space(seed: int, per: int = 40, concepts: int = 4):
    """Concept direction + a modality offset + noise whose spread differs per modality: text
    items of a concept nearly coincide (as template sentences do), images scatter. Raw cosine
    then ranks every query's own modality first."""
    g = torch.Generator().manual_seed(seed)
    concept_dirs = torch.eye(48)[:concepts]
    mod_dirs = torch.eye(48)[concepts : concepts + len(MODS)]
    noise = {"audio": 0.1, "image": 0.15, "text": 0.02}
    embs, labels = {}, {}
    for i, m in enumerate(MODS):
        lab = torch.arange(per) % concepts
        z = concept_dirs[lab] + 1.2 * mod_dirs[i] + noise[m] * torch.randn(per, 48, generator=g)
        embs[m], labels[m] = F.normalize(z, dim=1), lab
    return embs, _fs(labels)


def _labels(fs: FeatureSet) -> dict[str, torch.Tensor]:
    return {m: f.labels for m, f in fs.modalities.items()}


@pytest.mark.parametrize("method", METHODS)
def test_every_pair_map_is_strictly_increasing(method: str) -> None:
    embs, fs = _gapped_space(0)
    cal = fit_calibration(embs, _labels(fs), method)
    assert set(cal.pairs) == {f"{q}->{t}" for q in MODS for t in MODS}
    cos = np.linspace(-1, 1, 2001)
    for key, pc in cal.pairs.items():
        q, t = key.split("->")
        logit = cal.logit(q, t, cos)
        assert np.all(np.diff(logit) > 0), key
        rel = cal.relevance(q, t, cos)
        assert np.all((rel >= 0) & (rel <= 1)) and np.all(np.diff(rel) >= 0), key
        assert pc.positives > 0 and pc.negatives > 0


@pytest.mark.parametrize("method", METHODS)
def test_calibration_keeps_every_per_direction_ranking(method: str) -> None:
    """Per-direction recall cannot move: within each (query, target) block the calibrated
    scores order the targets exactly as the raw cosines do."""
    embs, fs = _gapped_space(1)
    cal = fit_calibration(embs, _labels(fs), method)
    mods = list(MODS)
    z = torch.cat([embs[m] for m in mods])
    mod_ids = torch.cat([torch.full((len(embs[m]),), i) for i, m in enumerate(mods)])
    raw = z @ z.T
    cs = calibrated_scores(raw, mod_ids, mods, cal)
    for i in range(len(mods)):
        for j in range(len(mods)):
            rows, cols = mod_ids == i, mod_ids == j
            block_raw, block_cal = raw[rows][:, cols], cs[rows][:, cols]
            assert torch.equal(
                torch.argsort(block_raw, dim=1, descending=True, stable=True),
                torch.argsort(block_cal, dim=1, descending=True, stable=True),
            )


def test_raw_cosine_ranks_by_modality_and_calibrated_scores_interleave() -> None:
    fit_embs, fit_fs = _gapped_space(2)  # the "validation split"
    embs, fs = _gapped_space(3)  # held-out items scored with it
    raw = mixed_pool_metrics(embs, fs)
    cal = fit_calibration(fit_embs, _labels(fit_fs), "listwise")
    out = mixed_pool_metrics(embs, fs, calibration=cal)
    for m in MODS:
        assert raw[m]["mix_ratio"] < 0.05  # every query's own modality first
        assert out[m]["mix_ratio"] >= 0.8, (m, out[m])
        assert out[m]["P@10"] >= 0.9 * out[m]["P@10_directions"]


def test_a_pair_without_positives_keeps_the_identity() -> None:
    embs = {
        "image": F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=1),
        "text": F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)), dim=1),
    }
    labels = {"image": torch.tensor([0, 0, 1, 1, 2, 2]), "text": torch.tensor([5, 5, 6, 6])}
    for method in METHODS:
        cal = fit_calibration(embs, labels, method)
        for key in ("image->text", "text->image"):
            pc = cal.pairs[key]
            assert (pc.a, pc.b, pc.x, pc.positives) == (1.0, 0.0, None, 0), (method, key)
        assert cal.pairs["image->image"].positives == 6


def test_platt_relevance_is_a_probability_of_the_same_concept() -> None:
    rng = np.random.default_rng(0)
    cos = np.concatenate([rng.normal(0.7, 0.1, 2000), rng.normal(0.3, 0.1, 8000)])
    pos = np.arange(len(cos)) < 2000
    from spaner.search.calibration import _fit_pair  # one pair, fitted directly

    pc = _fit_pair(cos, pos, "platt")
    cal = Calibration("platt", {"text->image": pc})
    p = cal.relevance("text", "image", cos)
    # calibrated: the mean predicted probability in a bin matches the bin's positive rate
    for lo, hi in ((0.45, 0.5), (0.5, 0.55), (0.55, 0.6)):
        sel = (cos >= lo) & (cos < hi)
        assert abs(p[sel].mean() - pos[sel].mean()) < 0.06


def test_serialisation_round_trip_and_bad_files(tmp_path) -> None:
    embs, fs = _gapped_space(4)
    for method in METHODS:
        cal = fit_calibration(embs, _labels(fs), method)
        cal.save(tmp_path)
        back = load_calibration(tmp_path)
        assert back is not None and back.to_dict() == cal.to_dict()
        cos = np.linspace(-1, 1, 11)
        assert np.allclose(back.logit("text", "image", cos), cal.logit("text", "image", cos))
    (tmp_path / CALIBRATION_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match=CALIBRATION_NAME):
        load_calibration(tmp_path)
    bad = {"format": 1, "method": "platt", "pairs": {"text->image": {"a": -1.0, "b": 0.0}}}
    (tmp_path / CALIBRATION_NAME).write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(CheckpointError, match="increasing"):
        load_calibration(tmp_path)
    (tmp_path / CALIBRATION_NAME).unlink()
    assert load_calibration(tmp_path) is None


def test_unknown_calibration_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="calibration"):
        TrainConfig(calibration="softmax").validate()


@dataclass
class _Hit:
    id: int
    score: float
    metadata: dict = field(default_factory=dict)


def test_merge_ranks_by_relevance_and_keeps_each_modality_in_index_order() -> None:
    cal = Calibration(
        "platt",
        {
            "text->text": PairCalibration(20.0, -19.0),  # relevant only near cosine 1
            "text->image": PairCalibration(20.0, -9.0),  # relevant from cosine ~.45
        },
    )
    per_target = {
        "text": [_Hit(1, 0.97), _Hit(2, 0.95), _Hit(3, 0.90)],
        "image": [_Hit(10, 0.60), _Hit(11, 0.50), _Hit(12, 0.20)],
    }
    q = np.zeros(4, np.float32)
    merged = rank(fuse(None, q, "", per_target, {}, cal, {"text": 1.0}), 4)
    assert [h.id for h in merged] == [10, 11, 1, 2]  # raw cosine would give 1, 2, 3, 10
    rel = [h.relevance for h in merged]
    assert rel == sorted(rel, reverse=True) and all(0 <= r <= 1 for r in rel)
    # a query averaged from a text and an image example weighs both modalities' maps
    assert query_weights(["text", "image", "text"]) == pytest.approx(
        {"text": 2 / 3, "image": 1 / 3}
    )
    mixed = rank(fuse(None, q, "", per_target, {}, cal, {"text": 0.5, "image": 0.5}), 6)
    assert len(mixed) == 6  # unknown pairs (image->*) use the identity


def test_fit_stores_the_calibration_with_the_checkpoint(trimodal_set, tmp_path) -> None:
    sp = Spaner.from_profile("tiny", encoders=TRI)
    cfg = TrainConfig(shots=3, epochs=3, audio_augment=0, min_epochs=0)
    sp.fit(trimodal_set, cfg, progress=False)
    assert sp.calibration is not None and sp.calibration.method == "listwise"
    assert sp.calibration.fitted_on == "val"
    assert {k.split("->")[0] for k in sp.calibration.pairs} == set(sp.modalities)
    ckpt = sp.save(tmp_path / "ckpt")
    assert (ckpt / CALIBRATION_NAME).is_file()
    loaded = Spaner.load(ckpt)
    assert loaded.calibration is not None
    assert loaded.calibration.to_dict() == sp.calibration.to_dict()
    space_id = loaded.space_id
    # a checkpoint from before calibration existed loads and has none; its space is the same
    (ckpt / CALIBRATION_NAME).unlink()
    old = Spaner.load(ckpt)
    assert old.calibration is None and old.space_id == space_id
    # --calibration none trains without one
    sp2 = Spaner.from_profile("tiny", encoders=TRI)
    sp2.fit(trimodal_set, TrainConfig(shots=3, epochs=2, audio_augment=0, calibration="none"))
    assert sp2.calibration is None


def test_no_validation_split_falls_back_to_the_training_split(caplog) -> None:
    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TRI)
    g = torch.Generator().manual_seed(0)
    from spaner.encoders.base import ItemTokens

    def items(n: int, width: int) -> list[ItemTokens]:
        return [ItemTokens(torch.randn(3, width, generator=g)) for _ in range(n)]

    train = FeatureSet(
        {
            m: ModalityFeatures(
                items(6, sp.model.config.modalities[m].width),
                torch.tensor([0, 0, 1, 1, 2, 2]),
                [str(i) for i in range(6)],
                ["a", "a", "b", "b", "c", "c"],
            )
            for m in ("text", "image")
        }
    )
    with caplog.at_level(logging.WARNING, logger="spaner.search.calibration"):
        cal = calibrate_model(sp.model, FeatureSet(), train, "listwise")
    assert cal is not None and cal.fitted_on == "train"
    assert "training split" in caplog.text
    assert calibrate_model(sp.model, FeatureSet(), FeatureSet(), "listwise") is None
