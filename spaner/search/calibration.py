"""Search-time score calibration across modalities (metasearch score normalisation).

Cosines of different (query modality, target modality) pairs live on different scales (the
modality gap): a text query's same-concept texts sit near cosine .98, its same-concept images
near .6, so a merged ranking by raw cosine is decided by modality. A :class:`Calibration`
holds one monotone map per ordered pair ``q->t`` (same-modality pairs included) from a raw
cosine to a relevance logit ``a_qt * cos + b_qt``; ``relevance = sigmoid(logit)``. A mixed
pool is ranked by the logit (the same order as the relevance, without float ties where the
sigmoid saturates). Each map is increasing, so the ranking *within* one pair (one target
modality) is the raw-cosine ranking: per-direction recall does not change.

Methods (:data:`METHODS`; the default, ``listwise``, was chosen on the digits benchmark's
validation split, see BENCHMARKS.md "Mixed pool"), fitted on the validation split's cosines
(every ordered pair of items, an item never with itself; positive = same label):

* ``platt``: Platt scaling, logistic regression of "same concept" on the cosine, with Platt's
  smoothed targets (so a separable pair gives finite ``a, b``): relevance is the probability
  that the target shares the query's concept.
* ``zpos``: the cosine's z-score among that pair's *positives*, ``(cos - mean_pos) / sd_pos``:
  relevance 0.5 is the typical same-concept score of that pair; matches of every modality pair
  spread alike.
* ``zscore``: the cosine's z-score among every pair of items of that modality pair.
* ``listwise``: the maps of one query modality fitted together, on the mixed pool itself: for
  each query, a softmax over every other item of every modality (scores ``a_qt * cos + b_qt``)
  should put its mass on the query's positives, spread evenly over them whatever their
  modality (multi-positive cross-entropy, as in learning to merge result lists). Then one
  offset per query modality, fitted by logistic regression of "same concept" on the score,
  makes ``sigmoid`` of it a probability (it does not change any ranking).
* ``isotonic``: isotonic regression of "same concept" on the cosine (a step function stored as
  breakpoints), plus ``1e-6 * cos`` on the logit so the map stays strictly increasing.

A pair with no positive (or no negative, for ``platt`` and ``isotonic``) keeps the identity
(``a=1, b=0``). Stored as ``calibration.json`` beside the checkpoint's weights (JSON, no pickle).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaner.errors import CheckpointError
from spaner.model.embedding import embed_items
from spaner.training.data import FeatureSet

__all__ = [
    "CALIBRATION_NAME",
    "METHODS",
    "DEFAULT_METHOD",
    "PairCalibration",
    "Calibration",
    "fit_calibration",
    "load_calibration",
    "pair_scores",
    "calibrate_model",
]

log = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
METHODS = ("listwise", "platt", "zpos", "zscore", "isotonic")
DEFAULT_METHOD = "listwise"
_FORMAT = 1
_TIE = 1e-6  # isotonic: slope added to the logit so the map is strictly increasing
_CLIP = 1e-6  # isotonic: probabilities clipped to [_CLIP, 1 - _CLIP] before the logit


@dataclass
class PairCalibration:
    """One increasing map cosine -> logit: ``a * cos + b`` or, with ``x``/``y`` (isotonic),
    ``logit(interp(cos, x, y)) + 1e-6 * cos``."""

    a: float = 1.0
    b: float = 0.0
    x: list[float] | None = None
    y: list[float] | None = None
    positives: int = 0
    negatives: int = 0

    def logit(self, cos: np.ndarray) -> np.ndarray:
        cos = np.asarray(cos, dtype=np.float64)
        if self.x is not None and self.y is not None:
            p = np.clip(np.interp(cos, self.x, self.y), _CLIP, 1 - _CLIP)
            return np.log(p) - np.log1p(-p) + _TIE * cos
        return self.a * cos + self.b

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "positives": self.positives,
            "negatives": self.negatives,
        }
        if self.x is not None:
            out["x"], out["y"] = self.x, self.y
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairCalibration:
        a, b = float(d["a"]), float(d["b"])
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
            raise ValueError(f"a={a}, b={b}: a must be finite and > 0 (an increasing map)")
        x = d.get("x")
        y = d.get("y")
        if (x is None) != (y is None):
            raise ValueError("'x' and 'y' go together")
        if x is not None:
            x, y = [float(v) for v in x], [float(v) for v in y]
            if not x or len(x) != len(y):
                raise ValueError("'x' and 'y' must be non-empty and of one length")
            if bool(np.any(np.diff(x) < 0)) or bool(np.any(np.diff(y) < 0)):
                raise ValueError("'x' and 'y' must be non-decreasing")
        return cls(a, b, x, y, int(d.get("positives", 0)), int(d.get("negatives", 0)))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(v, dtype=np.float64)))


@dataclass
class Calibration:
    """Per ordered modality pair ``"q->t"`` maps; a missing pair is the identity."""

    method: str
    pairs: dict[str, PairCalibration] = field(default_factory=dict)
    fitted_on: str = "val"

    def pair(self, q: str, t: str) -> PairCalibration:
        return self.pairs.get(f"{q}->{t}", PairCalibration())

    def logit(self, q: str | Mapping[str, float], t: str, cos: np.ndarray) -> np.ndarray:
        """Ranking key of raw cosines ``cos`` of targets of modality ``t``. ``q`` is the query
        modality, or ``{modality: weight}`` for a query averaged from examples of several
        modalities (the weighted mean of each modality's logit)."""
        if isinstance(q, str):
            return self.pair(q, t).logit(cos)
        total = sum(q.values())
        if total <= 0:
            raise ValueError("query modality weights must sum to > 0")
        return sum(w / total * self.pair(m, t).logit(cos) for m, w in q.items() if w > 0)

    def relevance(self, q: str | Mapping[str, float], t: str, cos: np.ndarray) -> np.ndarray:
        """``sigmoid(logit)`` in [0, 1]: comparable across target modalities."""
        return _sigmoid(self.logit(q, t, cos))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "method": self.method,
            "fitted_on": self.fitted_on,
            "pairs": {k: v.to_dict() for k, v in sorted(self.pairs.items())},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        if d.get("format") != _FORMAT:
            raise ValueError(f"unknown calibration format {d.get('format')!r} (expected {_FORMAT})")
        method = d.get("method")
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        pairs = {}
        for key, val in dict(d.get("pairs") or {}).items():
            if not isinstance(key, str) or key.count("->") != 1:
                raise ValueError(f"pair key {key!r} is not 'query->target'")
            try:
                pairs[key] = PairCalibration.from_dict(val)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"pair {key!r}: {exc}") from None
        return cls(str(method), pairs, str(d.get("fitted_on", "val")))

    def save(self, directory: str | Path) -> Path:
        """Write ``calibration.json`` into ``directory`` (atomically)."""
        from spaner.index.atomic_io import atomic_write_text

        path = Path(directory) / CALIBRATION_NAME
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path


def load_calibration(directory: str | Path) -> Calibration | None:
    """The checkpoint's calibration, or None when it has none (a checkpoint from before)."""
    path = Path(directory) / CALIBRATION_NAME
    if not path.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: invalid calibration: {exc}") from exc


# -- fitting ------------------------------------------------------------------------------


def pair_scores(
    embs: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor], q: str, t: str
) -> tuple[np.ndarray, np.ndarray]:
    """(cosines, is-positive) of every ordered pair query-of-``q`` x target-of-``t`` (an item
    never paired with itself)."""
    sims = (embs[q] @ embs[t].T).double().numpy()
    pos = (labels[q].unsqueeze(1) == labels[t].unsqueeze(0)).numpy()
    if q == t:
        keep = ~np.eye(len(sims), dtype=bool)
        return sims[keep], pos[keep]
    return sims.ravel(), pos.ravel()


def _platt(cos: np.ndarray, pos: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Platt (1999) scaling by Newton steps with backtracking, on Platt's smoothed targets
    ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)``: ``(a, b)`` of ``logit = a * cos + b``."""
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    target = np.where(pos, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 0.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    nll = _nll(a, b, cos, target)
    for _ in range(iters):
        p = _sigmoid(a * cos + b)
        g_a, g_b = float(((p - target) * cos).sum()), float((p - target).sum())
        w = np.maximum(p * (1 - p), 1e-12)
        h_aa, h_ab, h_bb = float((w * cos * cos).sum()), float((w * cos).sum()), float(w.sum())
        det = h_aa * h_bb - h_ab * h_ab
        if det <= 1e-18:
            break
        da, db = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
        step = 1.0
        while step > 1e-8:  # Newton on a logistic loss can overshoot: halve until it improves
            new = _nll(a - step * da, b - step * db, cos, target)
            if new <= nll:
                break
            step /= 2
        else:
            break
        a, b = a - step * da, b - step * db
        done = nll - new < 1e-10 * max(1.0, nll)
        nll = new
        if done:
            break
    return float(a), float(b)


def _nll(a: float, b: float, cos: np.ndarray, target: np.ndarray) -> float:
    f = a * cos + b
    # -[t log s(f) + (1-t) log(1-s(f))] = log(1+e^f) - t f
    return float((np.logaddexp(0.0, f) - target * f).sum())


def _fit_pair(cos: np.ndarray, pos: np.ndarray, method: str) -> PairCalibration:
    n_pos, n_neg = int(pos.sum()), int(len(pos) - pos.sum())
    ident = PairCalibration(positives=n_pos, negatives=n_neg)
    if n_pos == 0 or (method in ("platt", "isotonic") and n_neg == 0):
        return ident
    if method == "platt":
        a, b = _platt(cos, pos)
        if not (a > 0 and math.isfinite(b)):
            return ident  # cosine does not rank positives first here: no increasing map
        return PairCalibration(a, b, positives=n_pos, negatives=n_neg)
    if method in ("zpos", "zscore"):
        ref = cos[pos] if method == "zpos" else cos
        sd = float(ref.std()) if len(ref) > 1 else 0.0
        sd = max(sd, 1e-3)  # one positive, or all alike: a floor keeps the map finite
        return PairCalibration(1.0 / sd, -float(ref.mean()) / sd, positives=n_pos, negatives=n_neg)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", increasing=True, y_min=0.0, y_max=1.0)
        iso.fit(cos, pos.astype(np.float64))
        x, y = iso.X_thresholds_.tolist(), iso.y_thresholds_.tolist()
        return PairCalibration(x=x, y=y, positives=n_pos, negatives=n_neg)
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")


def _listwise(
    embs: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    q: str,
    targets: Sequence[str],
    iters: int = 200,
) -> dict[str, tuple[float, float]]:
    """``{t: (a, b)}`` for query modality ``q``: see the module docstring (``listwise``)."""
    sims = torch.cat([(embs[q] @ embs[t].T).double() for t in targets], 1)
    pos = torch.cat([labels[q].unsqueeze(1) == labels[t].unsqueeze(0) for t in targets], 1)
    col = torch.cat([torch.full((len(embs[t]),), i) for i, t in enumerate(targets)])
    valid = torch.ones_like(pos)
    if q in targets:  # a query is not in its own pool
        start = sum(len(embs[t]) for t in targets[: list(targets).index(q)])
        idx = torch.arange(len(embs[q]))
        valid[idx, start + idx] = False
    pos = pos & valid
    rows = pos.any(1)
    sims, pos, valid = sims[rows], pos[rows], valid[rows]
    log_a = torch.full((len(targets),), math.log(10.0), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(targets), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_a, b], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")
    n_pos = pos.sum(1).double()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        s = log_a.exp()[col] * sims + b[col]
        s = s.masked_fill(~valid, -float("inf"))
        logp = s - torch.logsumexp(s, 1, keepdim=True)
        loss = -(logp.masked_fill(~pos, 0.0).sum(1) / n_pos).mean()
        loss = loss + 1e-3 * (b.mean() ** 2) + 1e-4 * ((log_a - math.log(10.0)) ** 2).sum()
        loss.backward()
        return loss

    if rows.any():
        opt.step(closure)
    a_fit, b_fit = log_a.detach().exp(), b.detach()
    # one offset for the query modality: a probability for sigmoid(score), same ranking
    score = (a_fit[col] * sims + b_fit[col])[valid].numpy()
    c = _offset(score, pos[valid].numpy())
    return {t: (float(a_fit[i]), float(b_fit[i]) + c) for i, t in enumerate(targets)}


def _offset(score: np.ndarray, pos: np.ndarray, iters: int = 50) -> float:
    """``c`` minimising the logistic loss of ``sigmoid(score + c)`` against ``pos`` (Newton)."""
    c = 0.0
    for _ in range(iters):
        p = _sigmoid(score + c)
        g, h = float((p - pos).sum()), float((p * (1 - p)).sum())
        if h < 1e-12:
            break
        step = g / h
        c -= step
        if abs(step) < 1e-9:
            break
    return c


def fit_calibration(
    embs: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    method: str = DEFAULT_METHOD,
    fitted_on: str = "val",
    modalities: Sequence[str] | None = None,
) -> Calibration:
    """Fit one map per ordered pair of ``modalities`` (default: every modality of ``embs`` with
    items) from embeddings and integer labels of a held-out split."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    mods = [m for m in (modalities or sorted(embs)) if m in embs and len(embs[m])]
    cal = Calibration(method, {}, fitted_on)
    if method == "listwise":
        return _fit_listwise(embs, labels, mods, cal)
    for q in mods:
        for t in mods:
            if q == t and len(embs[q]) < 2:
                continue
            cos, pos = pair_scores(embs, labels, q, t)
            cal.pairs[f"{q}->{t}"] = pc = _fit_pair(cos, pos, method)
            if pc.positives == 0:
                log.info("calibration %s->%s: no positive pair; identity kept", q, t)
    return cal


def _fit_listwise(
    embs: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    mods: Sequence[str],
    cal: Calibration,
) -> Calibration:
    for q in mods:
        counts = {}
        for t in mods:
            if q == t and len(embs[q]) < 2:
                continue
            _, pos = pair_scores(embs, labels, q, t)
            counts[t] = (int(pos.sum()), int(len(pos) - pos.sum()))
        fitted = [t for t, (p, _) in counts.items() if p > 0]
        params = _listwise(embs, labels, q, fitted) if fitted else {}
        for t, (n_pos, n_neg) in counts.items():
            a, b = params.get(t, (1.0, 0.0))
            cal.pairs[f"{q}->{t}"] = PairCalibration(a, b, positives=n_pos, negatives=n_neg)
            if t not in params:
                log.info("calibration %s->%s: no positive pair; identity kept", q, t)
    return cal


def calibrate_model(
    model: Any, val: FeatureSet | None, train: FeatureSet | None, method: str = DEFAULT_METHOD
) -> Calibration | None:
    """Fit ``method`` for a trained :class:`~spaner.model.SpanerModel` on the validation split;
    on the training split, with a warning, when there is no validation data; None when neither
    has two modalities' items or ``method`` is ``"none"``."""
    if method == "none":
        return None
    fs, split = val, "val"
    if fs is None or len(fs) == 0:
        log.warning("no validation split: search scores are calibrated on the training split")
        fs, split = train, "train"
    if fs is None or len(fs) == 0:
        return None
    mods = [m for m, f in fs.modalities.items() if m in model.aligners and len(f)]
    embs = {m: embed_items(model, m, fs.modalities[m].items) for m in mods}
    labels = {m: fs.modalities[m].labels for m in mods}
    cal = fit_calibration(embs, labels, method, split)
    log.info("calibrated %d modality pairs (%s) on the %s split", len(cal.pairs), method, split)
    return cal
