"""Per-class failure figures on hand-made predictions (spaner.evaluation.class_metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from spaner.evaluation.class_metrics import (
    class_report,
    per_class_recall,
    recall_at,
    swallow_share,
    top_confusions,
)

NAMES = ["bird", "dog", "train", "violin"]


def _scores(pred: list[int], n: int = 4) -> np.ndarray:
    """One-hot-ish scores whose top class is ``pred``, the others ranked by index."""
    s = -np.tile(np.arange(n, dtype=np.float32), (len(pred), 1)) / 10
    s[np.arange(len(pred)), pred] = 1.0
    return s


def test_swallow_share_of_a_hand_made_confusion() -> None:
    # 10 clips: "bird" takes 6 of them (its own 2 and 4 of the others)
    true = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    pred = [0, 0, 0, 0, 1, 0, 0, 2, 3, 3]
    share, cls = swallow_share(pred, NAMES)
    assert share == pytest.approx(0.6) and cls == "bird"
    assert per_class_recall(true, pred, NAMES) == {
        "bird": 1.0,
        "dog": pytest.approx(1 / 3),
        "train": pytest.approx(1 / 3),
        "violin": 1.0,
    }
    assert top_confusions(true, pred, NAMES) == [("dog", "bird", 2), ("train", "bird", 2)]


def test_perfect_predictions_swallow_only_their_own_share() -> None:
    true = [0, 1, 2, 3, 3]
    assert swallow_share(true, NAMES) == (pytest.approx(0.4), "violin")
    assert swallow_share([], NAMES)[1] is None


@pytest.mark.precision("fp32")
def test_recall_at_k_and_the_report() -> None:
    true = [0, 1, 2, 3]
    pred = [0, 0, 2, 1]
    scores = _scores(pred)
    assert recall_at(scores, true, 1) == pytest.approx(0.5)
    assert recall_at(scores, true, 4) == pytest.approx(1.0)
    # dog is the 2nd class of the clip predicted "bird" (index order after the top one)
    assert recall_at(scores, true, 2) == pytest.approx(0.75)
    rep = class_report(scores, true, NAMES)
    assert rep["R@1"] == pytest.approx(0.5) and rep["queries"] == 4 and rep["classes"] == 4
    assert rep["mean_class_recall"] == pytest.approx(0.5)
    assert rep["swallow_share"] == pytest.approx(0.5) and rep["swallow_class"] == "bird"
    assert rep["swallowers"] == [("bird", 1), ("dog", 1)]
