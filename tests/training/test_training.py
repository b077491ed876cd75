"""Few-shot training, extension, feature caching and evaluation on tiny seeded data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spaner.evaluation.compare import compare, evaluate_model, format_markdown
from spaner.model.config import TrainConfig
from spaner.pipeline import Spaner
from spaner.training.features import FeatureCache
from spaner.training.manifest import load_manifest

# tiny-bert-text: the tiny CLIP text tower has a *random* native space that training must
# first unlearn; the native path is tested on its own below.
TEXT_IMAGE = {"text": "tiny-bert-text"}


@pytest.mark.slow
def test_training_lowers_loss_and_lifts_text_to_image_recall(paired_set):
    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
    # lr pinned: the default (3e-4) is tuned on the digits benchmark's 200-epoch schedule; the tiny
    # random encoders in an 80-epoch run need the higher peak
    cfg = TrainConfig(shots=5, epochs=80, seed=0, lr=2e-3)
    data = sp.prepare(paired_set, cfg)
    assert len(set(data.test.modalities["image"].labels.tolist())) == 10  # chance R@1 = 0.1
    before, _ = evaluate_model(sp.model, data.test)
    result = sp.fit(data, cfg, progress=False)
    after, coherence = evaluate_model(sp.model, data.test)
    assert result.train_loss[-1] < result.initial_loss * 0.7
    assert after["text->image"]["R@1"] >= 0.9, after
    assert after["text->image"]["R@1"] > before["text->image"]["R@1"]
    assert coherence["silhouette_concept"] > coherence["silhouette_modality"]


def test_training_is_deterministic_for_a_seed(paired_set):
    states = []
    for _ in range(2):
        sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
        sp.fit(paired_set, TrainConfig(shots=3, epochs=4, seed=7), progress=False)
        states.append(sp.model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_native_space_is_the_starting_point_and_training_improves_on_it(paired_set):
    sp = Spaner.from_profile("tiny", modalities=["text", "image"])  # tiny CLIP: a native space
    assert all(c.use_native for c in sp.model.config.modalities.values())
    cfg = TrainConfig(shots=5, epochs=40, seed=0)
    data = sp.prepare(paired_set, cfg)
    z_native = torch.nn.functional.normalize(
        torch.stack([it.native for it in data.test.modalities["image"].items]), dim=-1
    )
    from spaner.model.embedding import embed_items

    assert torch.allclose(
        embed_items(sp.model, "image", data.test.modalities["image"].items), z_native, atol=1e-6
    )
    before, _ = evaluate_model(sp.model, data.test)
    result = sp.fit(data, cfg, progress=False)
    after, _ = evaluate_model(sp.model, data.test)
    assert result.train_loss[-1] < result.initial_loss
    assert after["image->text"]["R@1"] > before["image->text"]["R@1"]


@pytest.mark.slow
def test_extend_trains_only_the_new_modality(trimodal_set):
    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
    cfg = TrainConfig(shots=4, epochs=30, seed=0, audio_augment=0)  # tones: see below
    sp.fit(trimodal_set, cfg, progress=False)
    man = load_manifest(trimodal_set)
    texts = [i.fields["text"] for i in man.items if "text" in i.fields][:20]
    images = [i.fields["image"] for i in man.items if "image" in i.fields][:20]
    t0, i0 = sp.embed("text", texts), sp.embed("image", images)
    prompt0 = sp.model.prompt.detach().clone()

    # audio_augment=0: the synthetic sounds are tones whose pitch *is* the concept, so the
    # default speed/pitch augmentation would turn one concept's examples into another's
    result = sp.extend(
        "audio",
        trimodal_set,
        TrainConfig(shots=4, epochs=80, lr=3e-3, seed=0, audio_augment=0),
        encoder="tiny-wav2vec2-audio",
        progress=False,
    )
    assert result.train_loss[-1] < result.initial_loss
    assert np.array_equal(t0, sp.embed("text", texts)) and np.array_equal(
        i0, sp.embed("image", images)
    )
    assert torch.equal(prompt0, sp.model.prompt)
    data = sp.prepare(trimodal_set, cfg)
    retrieval, _ = evaluate_model(sp.model, data.test)
    assert retrieval["audio->image"]["R@1"] >= 0.5, retrieval  # chance 0.1: never trained together

    # retraining an existing modality leaves the others bit-identical too
    a0 = sp.embed("audio", [i.fields["audio"] for i in man.items if "audio" in i.fields][:10])
    sp.extend(
        "image",
        trimodal_set,
        TrainConfig(shots=4, epochs=3, seed=1, audio_augment=0),
        progress=False,
    )
    assert np.array_equal(t0, sp.embed("text", texts))
    assert np.array_equal(
        a0, sp.embed("audio", [i.fields["audio"] for i in man.items if "audio" in i.fields][:10])
    )
    assert not np.array_equal(i0, sp.embed("image", images))


def test_feature_cache_reuses_and_invalidates(paired_set, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
    calls = {"n": 0}
    enc = sp.encoders["image"]
    real = enc.encode

    def counting(values, names=None):
        calls["n"] += len(values)
        return real(values, names)

    monkeypatch.setattr(enc, "encode", counting)
    cfg = TrainConfig(shots=2, epochs=1)
    first = sp.prepare(paired_set, cfg, cache)
    n_first = calls["n"]
    assert n_first > 0
    second = sp.prepare(paired_set, cfg, cache)
    assert calls["n"] == n_first  # everything from the cache
    a = first.train.modalities["image"].items[0].tokens
    assert torch.equal(a, second.train.modalities["image"].items[0].tokens)
    # change one image's bytes: only that one is recomputed
    item = load_manifest(paired_set).items[0]
    original = Path(item.fields["image"]).read_bytes()
    try:
        from PIL import Image

        Image.new("RGB", (32, 32), (1, 2, 3)).save(item.fields["image"])
        sp.prepare(paired_set, cfg, cache)
        assert calls["n"] == n_first + 1
    finally:
        Path(item.fields["image"]).write_bytes(original)


@pytest.mark.slow
def test_compare_reports_every_method_and_direction(trimodal_set):
    sp = Spaner.from_profile("tiny")
    report = compare(
        sp,
        load_manifest(trimodal_set),
        TrainConfig(shots=3, epochs=5, audio_augment=0),
        progress=False,
    )
    assert set(report["methods"]) == {"spaner", "linear_adapter", "separate_prompts", "native"}
    dirs = {
        f"{a}->{b}"
        for a in ("text", "image", "audio")
        for b in ("text", "image", "audio")
        if a != b
    }
    assert set(report["methods"]["spaner"]) == dirs
    assert set(report["methods"]["native"]) == {
        "text->image",
        "image->text",
    }  # only CLIP has a native space
    for m in report["methods"]["spaner"].values():
        assert set(m) == {"R@1", "R@5", "R@10", "mAP@10", "P@10", "queries"}
        assert all(0 <= v <= 1 for k, v in m.items() if k != "queries") and m["queries"] >= 1
        assert m["R@1"] <= m["R@5"] <= m["R@10"]
    assert set(report["coherence"]["spaner"]) == {
        "modality_gap",
        "neighbour_purity",
        "silhouette_concept",
        "silhouette_modality",
    }
    assert report["relevance"] == "concept"
    assert set(report["mixed_pool"]) == set(report["methods"])
    for q, m in report["mixed_pool"]["spaner"].items():
        assert q in ("text", "image", "audio")
        assert m["pool_own_share"] == pytest.approx(
            (report["test_items"][q] - 1) / (sum(report["test_items"].values()) - 1), abs=1e-4
        )
        assert 0 <= m["own_share"] <= 1 and m["mix_ratio"] >= 0 and 0 <= m["P@10"] <= 1
    assert "modality-mix ratio" in format_markdown(report)
    # every trained method and baseline is calibrated alike; the raw-cosine figures stay beside
    assert set(report["mixed_pool_raw"]) == set(report["mixed_pool"])
    assert report["calibration"]["spaner"] == report["calibration"]["linear_adapter"]
    assert report["calibration"]["spaner"].startswith("listwise")


def test_validation_every_n_epochs_keeps_the_best_validated_weights(paired_set):
    from spaner.training.fit import validation_metrics

    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
    cfg = TrainConfig(shots=5, epochs=10, seed=0, val_every=3, min_epochs=0, patience=100)
    data = sp.prepare(paired_set, cfg)
    result = sp.fit(data, cfg, progress=False)
    validated = [i + 1 for i, v in enumerate(result.val_recall) if v is not None]
    assert validated == [3, 6, 9, 10]  # every third epoch, and the last
    assert len(result.val_loss) == len(result.train_loss) == 10
    assert result.best_epoch in validated
    assert result.val_seconds > 0
    loss, recall = validation_metrics(sp.model, data.val)
    assert recall == pytest.approx(
        result.val_recall[result.best_epoch - 1]
    )  # the kept weights are the best epoch's
    assert loss == pytest.approx(result.val_loss[result.best_epoch - 1], rel=1e-5)


def test_val_every_is_validated():
    from spaner.errors import ConfigError

    with pytest.raises(ConfigError):
        TrainConfig(val_every=0).validate()


def test_keep_last_trains_the_whole_schedule_and_keeps_its_end(paired_set):
    from spaner.errors import ConfigError
    from spaner.training.fit import validation_metrics

    sp = Spaner.from_profile("tiny", modalities=["text", "image"], encoders=TEXT_IMAGE)
    # patience 1 and min_epochs 0 would stop "best" after the first non-improving epoch
    cfg = TrainConfig(shots=5, epochs=8, seed=0, val_every=1, min_epochs=0, patience=1, keep="last")
    data = sp.prepare(paired_set, cfg)
    result = sp.fit(data, cfg, progress=False)
    assert result.epochs_run == 8  # no early stop
    loss, _ = validation_metrics(sp.model, data.val)
    assert loss == pytest.approx(result.val_loss[-1], rel=1e-5)  # the last epoch's weights
    with pytest.raises(ConfigError):
        TrainConfig(keep="first").validate()
