"""Per-class failure figures of a ranking against class names: which classes fail, and which
classes swallow the others.

A query (a clip) of class ``true[i]`` ranks the class names by score; its prediction is the
top one. From the predictions:

* **per-class recall**: the share of a class's queries predicted as that class;
* **confusions**: the most frequent (true class -> predicted class) pairs among the errors;
* **swallow share**: the largest share of all queries predicted as any one class. With ``C``
  classes and perfect predictions it is the largest class's share of the queries; a class the
  space collapses onto ("every sound is a bird") takes far more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "top_predictions",
    "recall_at",
    "per_class_recall",
    "top_confusions",
    "swallow_share",
    "class_report",
]


def top_predictions(scores: np.ndarray) -> np.ndarray:
    """The index of the best-scored class of each row of ``scores`` ``[queries, classes]``."""
    return np.asarray(scores).argmax(axis=1)


def recall_at(scores: np.ndarray, true: Sequence[int], k: int) -> float:
    """The share of queries whose class is among their ``k`` best-scored classes."""
    scores = np.asarray(scores)
    if len(scores) == 0:
        return float("nan")
    own = scores[np.arange(len(scores)), np.asarray(true)]
    rank = (scores > own[:, None]).sum(axis=1)  # ties count in the query's favour
    return float(np.mean(rank < k))


def per_class_recall(
    true: Sequence[int], pred: Sequence[int], names: Sequence[str]
) -> dict[str, float]:
    """``{class: recall}`` for every class with at least one query."""
    true, pred = np.asarray(true), np.asarray(pred)
    return {names[c]: float(np.mean(pred[true == c] == c)) for c in sorted(set(true.tolist()))}


def top_confusions(
    true: Sequence[int], pred: Sequence[int], names: Sequence[str], top: int = 10
) -> list[tuple[str, str, int]]:
    """The ``top`` most frequent ``(true class, predicted class, count)`` errors."""
    pairs = Counter((names[t], names[p]) for t, p in zip(true, pred, strict=True) if t != p)
    return [(t, p, n) for (t, p), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def swallow_share(pred: Sequence[int], names: Sequence[str]) -> tuple[float, str | None]:
    """``(share, class)``: the largest share of the queries predicted as one class."""
    if len(pred) == 0:
        return float("nan"), None
    cls, n = Counter(int(p) for p in pred).most_common(1)[0]
    return n / len(pred), names[cls]


def class_report(
    scores: np.ndarray, true: Sequence[int], names: Sequence[str], top: int = 10
) -> dict[str, Any]:
    """R@1, R@5, per-class recall (and its mean), the ``top`` confusions, the swallow share and
    the classes that take the most predictions of other classes."""
    pred = top_predictions(scores) if len(scores) else np.zeros(0, dtype=int)
    recall = per_class_recall(true, pred, names)
    share, swallower = swallow_share(pred, names)
    taken = Counter(names[p] for t, p in zip(true, pred, strict=True) if t != p)
    return {
        "queries": len(true),
        "classes": len(names),
        "R@1": round(recall_at(scores, true, 1), 4),
        "R@5": round(recall_at(scores, true, 5), 4),
        "mean_class_recall": round(float(np.mean(list(recall.values()))), 4) if recall else None,
        "per_class_recall": {k: round(v, 3) for k, v in sorted(recall.items())},
        "confusions": top_confusions(true, pred, names, top),
        "swallow_share": round(share, 4),
        "swallow_class": swallower,
        "swallowers": taken.most_common(5),
    }
