"""Binary detection metrics for per-window scores (attack = positive class).

Pure functions on numpy arrays, no I/O. ``scores`` are "higher = more likely attack"
(a softmax probability, a reconstruction error, a fused score); a window is predicted
as an attack when ``score >= threshold``.

Thresholds are chosen on validation with :func:`choose_threshold` (never a fixed 0.5;
detection notes, point 5) and then reused unchanged on every test scenario.

Conventions for degenerate input (no warnings, no exceptions):

- empty input: counts are 0, every ratio is ``None``;
- precision, recall, F1 with a zero denominator are ``0.0`` (scikit-learn's ``zero_division=0``);
  MCC with a zero denominator (constant truth or constant prediction) is ``0.0`` as in scikit-learn;
- rates conditioned on a class that is absent (specificity and FPR without benign windows, FNR
  without attack windows, balanced accuracy without both) are ``None``;
- threshold-free metrics (ROC-AUC, PR-AUC, detection rate at a given FPR) and curves need both
  classes, otherwise ``None``. Constant scores are not degenerate: ROC-AUC is then 0.5 and PR-AUC
  the attack share.

Invalid input (labels other than 0/1, non-finite scores, mismatched lengths, not 1-D) raises
``ValueError``.

Every threshold-dependent quantity is computed from one sort of the scores
(:func:`sklearn.metrics.confusion_matrix_at_thresholds`): ROC-AUC and average precision are the
same sums scikit-learn's ``roc_auc_score`` and ``average_precision_score`` evaluate, so a million
windows take a fraction of a second. All returned values are plain Python ``int``/``float``/``None``
(and lists of them), serialisable with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix_at_thresholds, precision_recall_curve, roc_curve

from kdgat.evaluation.policies import THRESHOLD_METHODS

FPR_LEVELS = {"detection_rate_at_fpr_1pct": 0.01, "detection_rate_at_fpr_0_1pct": 0.001}
_LOGIT_EPS = 1e-7


# --------------------------------------------------------------------------- helpers


def _validate(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """(labels as bool, scores as given) after checking shape, label values and finiteness."""
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D (got shapes {y.shape} and {s.shape})")
    if len(y) != len(s):
        raise ValueError(f"y_true and scores differ in length ({len(y)} vs {len(s)})")
    if y.dtype != bool:
        if not (y.dtype.kind in "biuf" and bool(np.all((y == 0) | (y == 1)))):
            raise ValueError("y_true must contain only 0 (benign) and 1 (attack)")
        y = y.astype(bool)
    if s.dtype.kind not in "biuf":
        raise ValueError(f"scores must be numeric (got dtype {s.dtype})")
    if s.dtype.kind == "f" and not bool(np.all(np.isfinite(s))):
        raise ValueError("scores must be finite (no NaN or infinity)")
    return y, s


def _sweep(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positives at every distinct score taken as threshold (decreasing thresholds).

    ``fps[i]`` / ``tps[i]`` count benign / attack windows with ``score >= thresholds[i]``; the last
    entry flags every window. Requires a non-empty input.
    """
    _, fps, _, tps, thresholds = confusion_matrix_at_thresholds(y.astype(np.int8), s, pos_label=1)
    return np.asarray(fps, dtype=np.float64), np.asarray(tps, dtype=np.float64), np.asarray(thresholds)


def _ratio(num: float, den: float, undefined: float | None) -> float | None:
    return float(num / den) if den else undefined


def _next_above(value, dtype: np.dtype) -> float:
    """The smallest number of the scores' float type above ``value`` (float64 for integer scores).

    Used as a threshold that flags no window scoring ``value`` or less, in the scores' own
    precision as well as in float64.
    """
    ftype = dtype.type if dtype.kind == "f" else np.float64
    return float(np.nextafter(ftype(value), ftype(np.inf)))


def _roc_points(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC coordinates from a sweep, starting at (0, 0) like scikit-learn's ``roc_curve``."""
    fpr = np.concatenate(([0.0], fps / fps[-1]))
    tpr = np.concatenate(([0.0], tps / tps[-1]))
    return fpr, tpr


def _detection_rate(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """Best TPR at a threshold whose FPR is <= max_fpr (``fpr`` ascending, starting at 0)."""
    idx = int(np.searchsorted(fpr, max_fpr, side="right")) - 1
    return float(tpr[idx])


def _average_precision(fps: np.ndarray, tps: np.ndarray) -> float:
    """sum_i (R_i - R_{i-1}) * P_i over decreasing thresholds, as ``average_precision_score``."""
    precision = tps / (tps + fps)  # every threshold is a score, so tps + fps >= 1
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# --------------------------------------------------------------------------- metrics


def binary_metrics(y_true, scores, threshold: float) -> dict:
    """Detection metrics of ``scores`` against ``y_true`` (1 = attack) with ``score >= threshold``.

    Keys: n, positives, negatives, threshold, tp, fp, tn, fn, confusion_matrix ``[[tn, fp], [fn, tp]]``,
    accuracy, precision, recall, f1, specificity, balanced_accuracy, mcc, fpr, fnr, roc_auc,
    pr_auc (average precision), detection_rate_at_fpr_1pct, detection_rate_at_fpr_0_1pct (best TPR
    of a threshold with FPR <= 1% / 0.1%, on the ROC curve). See the module docstring for ``None``.
    Scores are compared with the threshold in float64.
    """
    y, s = _validate(y_true, scores)
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold must not be NaN")
    n = len(y)
    pred = s.astype(np.float64, copy=False) >= threshold
    positives = int(np.count_nonzero(y))
    negatives = n - positives
    tp = int(np.count_nonzero(y & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = positives - tp
    tn = negatives - fp

    out: dict = {
        "n": n,
        "positives": positives,
        "negatives": negatives,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
    names = ["accuracy", "precision", "recall", "f1", "specificity", "balanced_accuracy", "mcc", "fpr", "fnr"]
    names += ["roc_auc", "pr_auc", *FPR_LEVELS]
    if n == 0:
        out.update(dict.fromkeys(names))
        return out

    recall = _ratio(tp, positives, 0.0)
    specificity = _ratio(tn, negatives, None)
    # MCC from the counts (Python ints: no overflow), 0.0 when undefined as in scikit-learn
    mcc_den = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = float((tp * tn - fp * fn) / math.sqrt(mcc_den)) if mcc_den else 0.0
    out.update(
        accuracy=(tp + tn) / n,
        precision=_ratio(tp, tp + fp, 0.0),
        recall=recall,
        f1=_ratio(2 * tp, 2 * tp + fp + fn, 0.0),
        specificity=specificity,
        balanced_accuracy=(recall + specificity) / 2 if positives and negatives else None,
        mcc=mcc,
        fpr=_ratio(fp, negatives, None),
        fnr=_ratio(fn, positives, None),
    )
    if positives and negatives:
        fps, tps, _ = _sweep(y, s)
        fpr_curve, tpr_curve = _roc_points(fps, tps)
        out["roc_auc"] = float(np.trapezoid(tpr_curve, fpr_curve))
        out["pr_auc"] = _average_precision(fps, tps)
        for key, level in FPR_LEVELS.items():
            out[key] = _detection_rate(fpr_curve, tpr_curve, level)
    else:
        out.update(dict.fromkeys(["roc_auc", "pr_auc", *FPR_LEVELS]))
    return out


def detection_rate_at_fpr(y_true, scores, max_fpr: float) -> float | None:
    """Best TPR reachable with a threshold whose FPR is <= ``max_fpr`` (None without both classes)."""
    y, s = _validate(y_true, scores)
    positives = int(np.count_nonzero(y))
    if positives == 0 or positives == len(y):
        return None
    fps, tps, _ = _sweep(y, s)
    return _detection_rate(*_roc_points(fps, tps), max_fpr)


# --------------------------------------------------------------------------- thresholds


def score_space(scores: np.ndarray) -> str:
    """Where a margin's midpoint is taken: ``logit`` for scores in [0, 1] (probabilities, fused
    scores), ``log`` for non-negative unbounded ones (reconstruction errors), else ``linear``."""
    low, high = float(np.min(scores)), float(np.max(scores))
    if low >= 0.0 and high <= 1.0:
        return "logit"
    return "log" if low >= 0.0 else "linear"


def _midpoint(low: float, high: float, space: str) -> float:
    """The midpoint of (low, high] in ``space``, mapped back to a score strictly above ``low``. A highest
    unflagged score of exactly 0 has no log: the linear midpoint then (its geometric mean with the
    smallest double put the threshold near 1e-154, flagging every positive score)."""
    if space == "logit":
        a, b = np.clip([low, high], _LOGIT_EPS, 1.0 - _LOGIT_EPS)
        z = (np.log(a / (1 - a)) + np.log(b / (1 - b))) / 2
        mid = float(1.0 / (1.0 + np.exp(-z)))
    elif space == "log" and low > 0.0:
        mid = float(np.exp((np.log(low) + np.log(high)) / 2))
    else:
        mid = (low + high) / 2
    return mid if low < mid <= high else high


def choose_threshold(y_val, scores_val, method: str = "f1", *, max_fpr: float = 0.01) -> dict:
    """Threshold chosen on validation scores; returns ``{threshold, method, value, fallback, ...}``.

    Candidates are the distinct validation scores (prediction ``score >= threshold``):

    - ``"f1"``: maximal validation F1, at the highest threshold that reaches it (the edge of the
      optimal range: as close to the attack scores as validation allows); ``value`` = that F1;
    - ``"margin"``: maximal validation F1 too, but in the middle of the range of thresholds that
      give it (every threshold in it predicts validation identically): the midpoint between the
      lowest flagged and the highest unflagged validation score, in logit space for scores in
      [0, 1], log space for non-negative scores (:func:`score_space`). On separable validation
      data it is the midpoint between the highest benign and the lowest attack score, so a test
      capture whose scores shift a little does not fall off the edge. The result also holds
      ``interval`` (the optimal range) and ``space``;
    - ``"youden"``: maximal TPR - FPR (Youden's J); ``value`` = J;
    - ``"fpr"``: the lowest threshold whose validation FPR is <= ``max_fpr`` (so the highest TPR
      under that false-alarm budget): just above the highest benign validation score the budget
      leaves unflagged, i.e. set by the benign windows alone (a benign-score quantile; where it leaves
      none flagged and validation is separable, the bottom of the gap, where ``"f1"`` takes its top);
      ``value`` = validation TPR
      there; the result also holds ``max_fpr``. When even the highest score is a benign window that
      breaks the budget, the threshold is just above the highest score (nothing flagged, value 0.0).

    Ties go to the highest threshold (fewer alarms) except for ``"margin"``. Degenerate validation
    sets give ``"fallback": True`` and ``value`` None:

    - only benign windows: just above the highest score (no false positive on validation); for
      ``"fpr"`` the lowest threshold keeping the benign FPR <= ``max_fpr``, as above;
    - only attack windows: the lowest score (every validation window flagged).

    "Just above" is the next representable number of the scores' float type. An empty validation
    set raises ``ValueError`` (there is nothing to choose from).
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"unknown threshold method {method!r} (expected one of {', '.join(THRESHOLD_METHODS)})")
    if method == "fpr" and not (0.0 <= max_fpr <= 1.0):
        raise ValueError(f"max_fpr must be within [0, 1] (got {max_fpr})")
    y, s = _validate(y_val, scores_val)
    if len(y) == 0:
        raise ValueError("cannot choose a threshold on an empty validation set")
    positives = int(np.count_nonzero(y))
    negatives = len(y) - positives
    result: dict = {"method": method}
    if method == "fpr":
        result["max_fpr"] = float(max_fpr)

    if negatives == 0:
        return {"threshold": float(s.min()), **result, "value": None, "fallback": True}
    fps, tps, thresholds = _sweep(y, s)
    fallback = positives == 0

    if method == "fpr":
        # fps grows as the threshold decreases: the admissible thresholds are a prefix
        k = int(np.searchsorted(fps / negatives, max_fpr, side="right"))
        if k == 0:
            threshold, value = _next_above(thresholds[0], s.dtype), 0.0
        else:
            # every threshold in (thresholds[k], thresholds[k-1]] flags the same validation windows, and
            # thresholds[k] is a benign score that breaks the budget: take the bottom of that range
            low = _next_above(thresholds[k], s.dtype) if k < len(thresholds) else float(thresholds[-1])
            threshold, value = low, float(tps[k - 1] / positives) if positives else None
    elif fallback:
        threshold, value = _next_above(thresholds[0], s.dtype), None
    else:
        if method in ("f1", "margin"):
            # F1 = 2 TP / (2 TP + FP + FN) at every point of the precision-recall curve
            objective = 2 * tps / (2 * tps + fps + (positives - tps))
            best = int(np.argmax(objective))  # first maximum = highest threshold among ties
        else:
            # Youden's J = TPR - FPR, compared in whole numbers (J * P * N): the two divisions rounded apart made
            # equal J differ in the last bit, and a tie went to the lower threshold
            best = int(np.argmax(tps.astype(np.int64) * negatives - fps.astype(np.int64) * positives))
            objective = tps / positives - fps / negatives
        threshold, value = float(thresholds[best]), float(objective[best])
        if method == "margin":
            # thresholds in (next lower score, thresholds[best]] all flag the same validation windows
            low = float(thresholds[best + 1]) if best + 1 < len(thresholds) else threshold
            space = score_space(s)
            if low < threshold:
                threshold = _midpoint(low, threshold, space)
            result.update(interval=[low, float(thresholds[best])], space=space)
    return {"threshold": threshold, **result, "value": None if fallback else value, "fallback": fallback}


# --------------------------------------------------------------------------- curves


def _downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the curve, endpoints included.

    Spacing is by cumulative L1 arc length of the (x, y) polyline, so steep and flat parts of a curve
    (for example the low-FPR end of a ROC curve) get points in proportion to how much they move.
    """
    m = len(x)
    if m <= max_points:
        return np.arange(m)
    arc = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    if arc[-1] == 0:
        return np.array([0, m - 1])
    inner = np.searchsorted(arc, np.linspace(0.0, arc[-1], max_points)[1:-1])
    return np.unique(np.concatenate(([0], np.clip(inner, 0, m - 1), [m - 1])))


def _as_list(values: np.ndarray) -> list:
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


def curve_points(y_true, scores, max_points: int = 200) -> dict:
    """ROC and precision-recall curves, each downsampled to at most ``max_points`` points.

    ``{"roc": {"fpr", "tpr", "thresholds"}, "pr": {"precision", "recall", "thresholds"}}`` as lists of
    equal length, in scikit-learn's order (ROC from (0, 0) to (1, 1); PR by increasing threshold, ending
    at recall 0, precision 1). Both endpoints are kept. The threshold of the ROC start point (no window
    flagged) and of the PR end point is ``None``. Collinear intermediate points are dropped first
    (``drop_intermediate=True``). ``{"roc": None, "pr": None}`` without both classes.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (got {max_points})")
    y, s = _validate(y_true, scores)
    positives = int(np.count_nonzero(y))
    if positives == 0 or positives == len(y):
        return {"roc": None, "pr": None}
    y8 = y.astype(np.int8)
    fpr, tpr, roc_thr = roc_curve(y8, s, pos_label=1, drop_intermediate=True)
    precision, recall, pr_thr = precision_recall_curve(y8, s, pos_label=1, drop_intermediate=True)
    pr_thr = np.concatenate((np.asarray(pr_thr, dtype=np.float64), [np.inf]))
    i = _downsample(fpr, tpr, max_points)
    j = _downsample(recall, precision, max_points)
    return {
        "roc": {
            "fpr": _as_list(fpr[i]),
            "tpr": _as_list(tpr[i]),
            "thresholds": _as_list(np.asarray(roc_thr, dtype=np.float64)[i]),
        },
        "pr": {"precision": _as_list(precision[j]), "recall": _as_list(recall[j]), "thresholds": _as_list(pr_thr[j])},
    }


# --------------------------------------------------------------------------- seeds


def summarize_seeds(values: Sequence[float | None]) -> dict:
    """``{mean, std, n}`` over seeds; std with ddof=1 (``None`` for a single value: one run has no spread to show).

    ``None`` and NaN entries (a metric undefined for that run) are left out and not counted in ``n``;
    with no value left, mean and std are ``None``.
    """
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(kept, dtype=np.float64)
    std = float(np.std(arr, ddof=1)) if len(arr) > 1 else None
    return {"mean": float(arr.mean()), "std": std, "n": len(arr)}


def format_mean_std(d: dict, digits: int = 3) -> str:
    """``"0.953 ± 0.004"`` from a :func:`summarize_seeds` result; ``"0.953 (one value)"`` without a spread, ``"n/a"``
    without values."""
    if d.get("mean") is None:
        return "n/a"
    if d.get("std") is None:
        return f"{d['mean']:.{digits}f} (one value)"
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"
