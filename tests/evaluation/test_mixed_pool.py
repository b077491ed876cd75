"""The mixed-pool metric and the objective that merges the modalities (spaner.model.losses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from feature_sets import MODS, labelled_feature_set

from spaner.errors import ConfigError
from spaner.evaluation.metrics import mixed_pool_metrics
from spaner.model.config import TrainConfig
from spaner.model.losses import mixed_info_nce, modality_gap_penalty, objective
from spaner.model.network import info_nce

_fs = labelled_feature_set


def _space(modality_weight: float, per: int = 12, concepts: int = 4, seed: int = 0):
    """Embeddings = concept direction + ``modality_weight`` * modality direction + noise."""
    g = torch.Generator().manual_seed(seed)
    concept_dirs = torch.eye(32)[:concepts]
    mod_dirs = torch.eye(32)[concepts : concepts + len(MODS)]
    embs, labels = {}, {}
    for i, m in enumerate(MODS):
        lab = torch.arange(per) % concepts
        z = (
            concept_dirs[lab]
            + modality_weight * mod_dirs[i]
            + 0.05 * torch.randn(per, 32, generator=g)
        )
        embs[m], labels[m] = F.normalize(z, dim=1), lab
    return embs, _fs(labels)


def test_a_space_clustered_by_modality_scores_a_mix_ratio_of_zero() -> None:
    embs, fs = _space(modality_weight=3.0)
    out = mixed_pool_metrics(embs, fs)
    assert set(out) == set(MODS)
    for m in MODS:
        assert out[m]["own_share"] == 1.0
        assert out[m]["mix_ratio"] == 0.0
        assert out[m]["pool_own_share"] == pytest.approx(11 / 35, abs=1e-4)
        # the top 10 are own-modality items: the concept's 2 others, then other concepts
        assert out[m]["P@10"] == pytest.approx(0.2, abs=1e-4)
        # against one other modality at a time, the concept's 3 items there come first
        assert out[m]["P@10_directions"] == pytest.approx(0.3, abs=1e-4)


def test_a_space_ranking_by_meaning_alone_scores_a_mix_ratio_near_one() -> None:
    embs, fs = _space(modality_weight=0.0)
    out = mixed_pool_metrics(embs, fs)
    for m in MODS:
        # 8 relevant items in the pool (3 per modality, minus the query): all in the top 8
        assert out[m]["P@10"] == pytest.approx(0.8, abs=1e-4)
        assert out[m]["mAP@10"] == pytest.approx(1.0, abs=1e-4)
        assert 0.6 <= out[m]["mix_ratio"] <= 1.4
        assert out[m]["own_share"] < 0.6


def test_a_query_never_finds_itself() -> None:
    z = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01]]), dim=1)
    embs = {"image": z[:1], "text": z[1:]}
    fs = _fs({"image": torch.tensor([0]), "text": torch.tensor([1, 0])})
    out = mixed_pool_metrics(embs, fs, k=1)
    assert out["image"]["P@10"] == 1.0 and out["image"]["own_share"] == 0.0
    assert out["image"]["pool_own_share"] == 0.0  # the pool is the other two items


def test_mixed_info_nce_counts_same_modality_negatives() -> None:
    """The pairs loss cannot see that items of one modality sit together; the mixed loss can."""
    scale = torch.tensor(0.0)  # temperature 1
    embs, fs = _space(modality_weight=3.0, per=8)
    labels = {m: fs.modalities[m].labels for m in MODS}
    merged, _ = _space(modality_weight=0.0, per=8)
    pairs = [("audio", "image"), ("audio", "text"), ("image", "text")]
    by_mod = objective(embs, labels, scale, pairs, loss="mixed")
    by_meaning = objective(merged, labels, scale, pairs, loss="mixed")
    assert by_meaning < by_mod - 0.1
    # the old per-pair loss barely tells the two spaces apart (each pair sees one modality shift)
    p_mod = objective(embs, labels, scale, pairs, loss="pairs")
    p_meaning = objective(merged, labels, scale, pairs, loss="pairs")
    assert abs(float(p_mod - p_meaning)) < float(by_mod - by_meaning)


def test_pairs_objective_is_the_mean_info_nce_and_both_the_mean_of_the_two() -> None:
    embs, fs = _space(modality_weight=1.0, per=6, seed=3)
    labels = {m: fs.modalities[m].labels for m in MODS}
    scale = torch.tensor(1.0)
    pairs = [("audio", "image"), ("image", "text")]
    expected = torch.stack(
        [info_nce(embs[a], embs[b], labels[a], labels[b], scale) for a, b in pairs]
    ).mean()
    assert objective(embs, labels, scale, pairs, loss="pairs") == pytest.approx(float(expected))
    mixed = objective(embs, labels, scale, pairs, loss="mixed")
    both = objective(embs, labels, scale, pairs, loss="both")
    assert float(both) == pytest.approx((float(expected) + float(mixed)) / 2, rel=1e-5)


def test_balance_gives_each_modality_an_equal_share_of_the_target() -> None:
    # anchor 0 (modality 0) has 3 positives in modality 0 and 1 in modality 1
    z = F.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    labels = torch.tensor([0, 0, 0, 0, 0, 1])
    mods = torch.tensor([0, 0, 0, 0, 1, 1])
    scale = torch.tensor(0.0)
    rows = torch.tensor([True, False, False, False, False, False])
    logp = F.log_softmax(z[0] @ z[1:].T, dim=0)
    balanced = -(logp[:3].mean() * 0.5 + logp[3] * 0.5)
    plain = -logp[:4].mean()
    assert mixed_info_nce(z, labels, mods, scale, True, rows) == pytest.approx(float(balanced))
    assert mixed_info_nce(z, labels, mods, scale, False, rows) == pytest.approx(float(plain))


def test_mixed_loss_gradients_are_finite_and_rows_limit_the_anchors() -> None:
    z = torch.randn(10, 8, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])  # label 3: no positive, ignored
    mods = torch.tensor([0] * 5 + [1] * 5)
    loss = mixed_info_nce(F.normalize(z, dim=1), labels, mods, torch.tensor(2.0))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    none = mixed_info_nce(
        F.normalize(z, dim=1), labels, mods, torch.tensor(2.0), rows=torch.zeros(10, dtype=bool)
    )
    assert float(none.detach()) == 0.0


def test_gap_penalty_is_zero_for_shared_centroids_and_added_with_its_weight() -> None:
    a = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    assert float(modality_gap_penalty({"x": a, "y": a.flip(0)})) == pytest.approx(0.0)
    b = a + torch.tensor([0.0, 1.0])
    assert float(modality_gap_penalty({"x": a, "y": b})) == pytest.approx(1.0)
    labels = {"x": torch.tensor([0, 1]), "y": torch.tensor([0, 1])}
    s = torch.tensor(0.0)
    base = objective({"x": a, "y": b}, labels, s, [("x", "y")], loss="mixed")
    with_gap = objective({"x": a, "y": b}, labels, s, [("x", "y")], loss="mixed", gap_weight=0.5)
    assert float(with_gap - base) == pytest.approx(0.5)


def test_train_config_checks_the_objective() -> None:
    with pytest.raises(ConfigError, match="loss must be"):
        TrainConfig(loss="triplet").validate()
    with pytest.raises(ConfigError, match="gap_weight"):
        TrainConfig(gap_weight=-1.0).validate()


def test_own_modality_preference_counts_only_a_lean_towards_the_own_modality() -> None:
    from spaner.model.losses import own_modality_preference

    # anchor 0 (modality 0): its own-modality positive is identical, its other-modality one is
    # orthogonal -> preference 1 - 0 = 1, squared 1; anchor 2 leans the other way -> 0
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 1])
    mods = torch.tensor([0, 0, 1, 1])
    rows = torch.tensor([True, False, True, False])
    # anchor 2 has no own-modality positive (item 3 is another concept): not counted
    assert float(own_modality_preference(z, labels, mods, rows)) == pytest.approx(1.0)
    even = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert float(own_modality_preference(even, labels, mods)) == pytest.approx(0.0)
    scale = torch.tensor(0.0)
    embs = {"a": z[:2], "b": z[2:]}
    lab = {"a": labels[:2], "b": labels[2:]}
    base = objective(embs, lab, scale, [("a", "b")], loss="mixed")
    with_mix = objective(embs, lab, scale, [("a", "b")], loss="mixed", mix_weight=0.25)
    # anchors 0 and 1 each lean by 1 (anchor 2 has no own-modality positive)
    assert float(with_mix - base) == pytest.approx(0.25)


def test_queries_without_a_relevant_target_are_left_out_of_recall() -> None:
    from spaner.evaluation.metrics import retrieval_metrics

    # three images (concepts 0, 1, 2), sounds only for concepts 0 and 1: the concept-2 image
    # cannot be answered by any sound and must not count as a miss
    fs = _fs({"image": torch.tensor([0, 1, 2]), "audio": torch.tensor([0, 1])})
    embs = {
        "image": torch.eye(3),
        "audio": torch.eye(3)[:2],
    }
    r = retrieval_metrics(embs, fs)
    assert r["image->audio"]["R@1"] == 1.0 and r["image->audio"]["queries"] == 2
    assert r["audio->image"]["queries"] == 2


def test_coherence_of_a_tiny_test_set_does_not_fail() -> None:
    from spaner.evaluation.metrics import coherence_metrics

    # one item per modality (a demo's held-out split can be this small): no silhouette, no crash
    fs = _fs({"image": torch.tensor([0]), "audio": torch.tensor([1]), "text": torch.tensor([2])})
    embs = {m: torch.nn.functional.normalize(torch.randn(1, 4), dim=-1) for m in fs.modalities}
    out = coherence_metrics(embs, fs)
    assert out["silhouette_modality"] is None and out["silhouette_concept"] is None
