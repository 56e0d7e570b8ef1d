"""kdgat.evaluation.metrics against scikit-learn, brute force and hand-worked cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from kdgat.evaluation.metrics import (
    binary_metrics,
    choose_threshold,
    curve_points,
    detection_rate_at_fpr,
    format_mean_std,
    summarize_seeds,
)
from kdgat.evaluation.policies import parse_policy

RATIO_KEYS = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "specificity",
    "balanced_accuracy",
    "mcc",
    "fpr",
    "fnr",
    "roc_auc",
    "pr_auc",
    "detection_rate_at_fpr_1pct",
    "detection_rate_at_fpr_0_1pct",
]


def strict_json(obj) -> str:
    """JSON without NaN/Infinity, and every value a plain Python type."""
    return json.dumps(obj, allow_nan=False)


def random_case(seed: int, n: int = 2000, rate: float = 0.2, decimals: int | None = 2):
    """Labels and informative scores; rounding creates ties between the classes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    s = rng.normal(size=n) + 1.2 * y
    if decimals is not None:
        s = np.round(s, decimals)
    return y, s


def brute_force_rates(y, s):
    """(threshold, tp, fp) for every candidate threshold: each distinct score, and +inf (nothing flagged)."""
    y = np.asarray(y, dtype=bool)
    rows = []
    for t in [*np.unique(s), np.inf]:
        pred = s >= t
        rows.append((t, int(np.sum(pred & y)), int(np.sum(pred & ~y))))
    return rows


def brute_force_detection_rate(y, s, level):
    p, n = int(np.sum(y)), int(np.sum(1 - np.asarray(y)))
    return max(tp / p for _, tp, fp in brute_force_rates(y, s) if fp / n <= level)


# --------------------------------------------------------------------------- binary_metrics


def test_hand_made_case():
    # 6 benign, 4 attack windows; threshold 0.6, prediction = score >= 0.6
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.5, 0.7, 0.8, 0.9])
    # benign: 0.6 and 0.7 flagged (0.6 >= 0.6 counts) -> fp = 2, tn = 4
    # attack: 0.7, 0.8, 0.9 flagged -> tp = 3; 0.5 missed -> fn = 1
    m = binary_metrics(y, s, 0.6)
    assert (m["n"], m["positives"], m["negatives"]) == (10, 4, 6)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (3, 2, 4, 1)
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["accuracy"] == pytest.approx(7 / 10)  # (tp + tn) / n
    assert m["precision"] == pytest.approx(3 / 5)  # tp / (tp + fp)
    assert m["recall"] == pytest.approx(3 / 4)  # tp / (tp + fn)
    assert m["f1"] == pytest.approx(6 / 9)  # 2tp / (2tp + fp + fn)
    assert m["specificity"] == pytest.approx(4 / 6)  # tn / (tn + fp)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert m["mcc"] == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5))  # (tp tn - fp fn) / sqrt(...)
    assert m["fpr"] == pytest.approx(2 / 6)
    assert m["fnr"] == pytest.approx(1 / 4)
    # ranking: of the 24 (attack, benign) pairs, attack 0.5 beats 4 benign, 0.7 beats 5 and ties 1 (0.5),
    # 0.8 and 0.9 beat all 6 -> AUC = (4 + 5.5 + 6 + 6) / 24
    assert m["roc_auc"] == pytest.approx(21.5 / 24)
    # average precision: thresholds 0.9, 0.8 -> precision 1 (recall 1/4, 2/4); 0.7 -> 3/4 at recall 3/4;
    # 0.5 -> 4/6 at recall 1: AP = (1 + 1 + 3/4 + 4/6) / 4
    assert m["pr_auc"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 6) / 4)
    # 6 benign windows: FPR <= 1% only with no false positive -> thresholds 0.9, 0.8 -> TPR 2/4
    assert m["detection_rate_at_fpr_1pct"] == pytest.approx(0.5)
    assert m["detection_rate_at_fpr_0_1pct"] == pytest.approx(0.5)
    strict_json(m)


def test_threshold_is_inclusive():
    y = np.array([0, 1, 1])
    s = np.array([0.2, 0.5, 0.7])
    assert binary_metrics(y, s, 0.5)["tp"] == 2  # 0.5 >= 0.5 is an attack prediction
    assert binary_metrics(y, s, np.nextafter(0.5, 1))["tp"] == 1
    assert binary_metrics(y, s, 0.2)["fp"] == 1
    assert binary_metrics(y, s, 0.7 + 1e-9)["confusion_matrix"] == [[1, 0], [2, 0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("decimals", [None, 1])
def test_against_sklearn_random(seed, decimals):
    y, s = random_case(seed, decimals=decimals)
    threshold = float(np.quantile(s, 0.7))
    pred = (s >= threshold).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics(y, s, threshold)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert (m["n"], m["positives"], m["negatives"]) == (len(y), int(y.sum()), int((1 - y).sum()))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["fpr"] == pytest.approx(1 - skm.recall_score(y, pred, pos_label=0))
    assert m["fnr"] == pytest.approx(1 - skm.recall_score(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), rel=1e-12)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    for key, level in [("detection_rate_at_fpr_1pct", 0.01), ("detection_rate_at_fpr_0_1pct", 0.001)]:
        assert m[key] == pytest.approx(tpr[fpr <= level].max())
        assert m[key] == pytest.approx(brute_force_detection_rate(y, s, level))
    for key in ["n", "positives", "negatives", "tp", "fp", "tn", "fn"]:
        assert type(m[key]) is int
    for key in RATIO_KEYS + ["threshold"]:
        assert type(m[key]) is float
    strict_json(m)


def test_accepts_bool_and_float32():
    y, s = random_case(5)
    a = binary_metrics(y, s, 0.3)
    b = binary_metrics(y.astype(bool), s.astype(np.float32), 0.3)
    assert (a["tp"], a["fp"]) == (b["tp"], b["fp"])
    assert a["roc_auc"] == pytest.approx(b["roc_auc"])
    strict_json(b)


def test_detection_rate_hand_made_roc():
    # 1000 benign windows at 0.000, 0.001, ..., 0.999; 100 attacks: 50 at 2.0 (above every benign),
    # 30 at 0.9955 (4 benign above them: 0.996..0.999), 20 at -1.0 (below every benign)
    benign = np.arange(1000) / 1000
    attack = np.r_[np.full(50, 2.0), np.full(30, 0.9955), np.full(20, -1.0)]
    y = np.r_[np.zeros(1000, int), np.ones(100, int)]
    s = np.r_[benign, attack]
    m = binary_metrics(y, s, 0.5)
    # FPR <= 0.1% -> at most 1 false positive: threshold 0.999 (fp = 1, exactly 0.1%) -> TPR 50/100
    assert m["detection_rate_at_fpr_0_1pct"] == pytest.approx(0.5)
    # FPR <= 1% -> at most 10 false positives: threshold 0.990 (fp = 10) -> TPR 80/100
    assert m["detection_rate_at_fpr_1pct"] == pytest.approx(0.8)
    assert detection_rate_at_fpr(y, s, 0.0) == pytest.approx(0.5)
    assert detection_rate_at_fpr(y, s, 0.005) == pytest.approx(0.8)
    assert detection_rate_at_fpr(y, s, 1.0) == pytest.approx(1.0)


def test_detection_rate_keeps_collinear_roc_points():
    # 20 (benign, attack) pairs tied at scores 100..81 move the ROC curve along a straight line;
    # roc_curve(drop_intermediate=True) drops those points, but they are reachable thresholds:
    # threshold 91 gives fp = 10 (1% of 1000) and tp = 10 (10% of 100).
    rng = np.random.default_rng(3)
    high = np.arange(100, 80, -1, dtype=float)
    s = np.r_[high, rng.random(980), high, rng.random(80)]
    y = np.r_[np.zeros(1000, int), np.ones(100, int)]
    m = binary_metrics(y, s, 0.5)
    assert m["detection_rate_at_fpr_1pct"] == pytest.approx(0.1)
    assert m["detection_rate_at_fpr_1pct"] == pytest.approx(brute_force_detection_rate(y, s, 0.01))
    fpr, tpr, _ = skm.roc_curve(y, s)  # the dropped points would under-report
    assert tpr[fpr <= 0.01].max() < 0.1


# --------------------------------------------------------------------------- degenerate input


@pytest.mark.parametrize(
    "y, s",
    [
        (np.zeros(50, int), np.linspace(0, 1, 50)),  # benign only
        (np.ones(50, int), np.linspace(0, 1, 50)),  # attack only
        (np.zeros(0, int), np.zeros(0)),  # empty
    ],
    ids=["benign-only", "attack-only", "empty"],
)
def test_degenerate_binary_metrics(y, s):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics(y, s, 0.5)
        cp = curve_points(y, s)
        dr = detection_rate_at_fpr(y, s, 0.01)
    for key in ["roc_auc", "pr_auc", "detection_rate_at_fpr_1pct", "detection_rate_at_fpr_0_1pct"]:
        assert m[key] is None
    assert m["balanced_accuracy"] is None
    assert cp == {"roc": None, "pr": None}
    assert dr is None
    strict_json(m)
    if len(y) == 0:
        assert all(m[k] is None for k in RATIO_KEYS)
        assert m["confusion_matrix"] == [[0, 0], [0, 0]]
    elif y[0] == 0:
        # 25 of 50 benign scores are >= 0.5
        assert (m["fp"], m["tn"]) == (25, 25)
        assert m["fpr"] == pytest.approx(0.5) and m["specificity"] == pytest.approx(0.5)
        assert m["fnr"] is None
        assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0  # zero_division=0
        assert m["mcc"] == 0.0
    else:
        assert (m["tp"], m["fn"]) == (25, 25)
        assert m["recall"] == pytest.approx(0.5) and m["precision"] == 1.0
        assert m["fpr"] is None and m["specificity"] is None


def test_constant_scores_and_constant_predictions():
    y = np.array([0, 1, 0, 1, 1, 0, 0, 0])
    s = np.full(8, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flag_all = binary_metrics(y, s, 0.3)
        flag_none = binary_metrics(y, s, 0.9)
        cp = curve_points(y, s)
    # constant scores are not degenerate for ranking metrics: chance level
    assert flag_all["roc_auc"] == pytest.approx(0.5)
    assert flag_all["pr_auc"] == pytest.approx(3 / 8)
    assert flag_all["confusion_matrix"] == [[0, 5], [0, 3]]
    assert flag_all["mcc"] == 0.0  # constant prediction: undefined, 0.0 as scikit-learn
    assert flag_none["confusion_matrix"] == [[5, 0], [3, 0]]
    assert flag_none["precision"] == 0.0 and flag_none["f1"] == 0.0
    assert flag_none["detection_rate_at_fpr_1pct"] == 0.0
    assert cp["roc"]["fpr"] == [0.0, 1.0] and cp["roc"]["tpr"] == [0.0, 1.0]
    strict_json([flag_all, flag_none, cp])


@pytest.mark.parametrize(
    "y, s, message",
    [
        ([0, 2, 1], [0.1, 0.2, 0.3], "only 0"),
        ([0, 1], [0.1, 0.2, 0.3], "length"),
        ([0, 1], [0.1, np.nan], "finite"),
        ([0, 1], [0.1, np.inf], "finite"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_invalid_input(y, s, message):
    with pytest.raises(ValueError, match=message):
        binary_metrics(y, s, 0.5)


# --------------------------------------------------------------------------- choose_threshold


def f1_at(y, s, t):
    pred = s >= t
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_choose_threshold_f1_is_the_brute_force_optimum(seed):
    y, s = random_case(seed, n=400, decimals=1 if seed % 2 else None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = choose_threshold(y, s, "f1")
    best = max(f1_at(y, s, t) for t in np.unique(s))
    assert r["method"] == "f1" and r["fallback"] is False
    assert r["threshold"] in set(np.unique(s).tolist())
    assert r["value"] == pytest.approx(best)
    assert f1_at(y, s, r["threshold"]) == pytest.approx(best)
    assert binary_metrics(y, s, r["threshold"])["f1"] == pytest.approx(best)
    # same optimum as the precision-recall curve of scikit-learn
    p, rc, _ = skm.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_curve = np.where(p + rc > 0, 2 * p * rc / (p + rc), 0.0)
    assert r["value"] == pytest.approx(f1_curve.max())
    strict_json(r)


def test_choose_threshold_f1_hand_made():
    # threshold 0.7: tp 3, fp 1, fn 1 -> F1 6/8; threshold 0.5: tp 4, fp 2 -> 8/10 (best); 0.8: tp 2 -> 4/6
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.5, 0.7, 0.8, 0.9])
    r = choose_threshold(y, s, "f1")
    assert r["threshold"] == 0.5 and r["value"] == pytest.approx(0.8)


@pytest.mark.parametrize("seed", [0, 1])
def test_choose_threshold_youden(seed):
    y, s = random_case(seed, n=400, decimals=1)
    r = choose_threshold(y, s, "youden")
    p, n = y.sum(), (1 - y).sum()
    best = max(tp / p - fp / n for _, tp, fp in brute_force_rates(y, s))
    assert r["value"] == pytest.approx(best)
    m = binary_metrics(y, s, r["threshold"])
    assert m["recall"] - m["fpr"] == pytest.approx(best)
    fpr, tpr, thr = skm.roc_curve(y, s)
    assert r["value"] == pytest.approx((tpr - fpr).max())


def test_choose_threshold_youden_hand_made():
    # threshold 0.5: TPR 4/4, FPR 2/6 -> J = 2/3; 0.8: TPR 2/4, FPR 0 -> 1/2; 0.7: 3/4 - 1/6 = 7/12
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.5, 0.7, 0.8, 0.9])
    r = choose_threshold(y, s, "youden")
    assert r["threshold"] == 0.5 and r["value"] == pytest.approx(2 / 3)


def test_choose_threshold_youden_ties_go_to_fewer_alarms():
    """1.0: TPR 1/3, FPR 0; 0.5: TPR 1, FPR 2/3: the same J, which 1/3 - 0 and 1 - 2/3 give apart in the last bit
    (0.3333333333333333 vs ...37): the lower threshold, flagging 2 of 3 benign windows, was taken."""
    r = choose_threshold([1, 1, 1, 0, 0, 0], [1.0, 0.5, 0.5, 0.6, 0.6, 0.1], "youden")
    assert r["threshold"] == 1.0 and r["value"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("max_fpr", [0.0, 0.001, 0.01, 0.05, 0.3, 1.0])
def test_choose_threshold_fpr_respects_budget(max_fpr):
    y, s = random_case(7, n=3000, decimals=2)
    r = choose_threshold(y, s, "fpr", max_fpr=max_fpr)
    assert r["max_fpr"] == max_fpr and r["fallback"] is False
    m = binary_metrics(y, s, r["threshold"])
    assert m["fpr"] <= max_fpr
    assert r["value"] == pytest.approx(m["recall"])
    # the lowest such threshold: the next lower distinct score breaks the budget
    lower = s[s < r["threshold"]]
    if len(lower):
        assert binary_metrics(y, s, lower.max())["fpr"] > max_fpr
    assert r["value"] == pytest.approx(brute_force_detection_rate(y, s, max_fpr))


def test_choose_threshold_fpr_is_set_by_the_benign_windows_alone():
    """Separable validation: the budget is met anywhere in the gap; fpr takes its bottom (just above the
    highest benign score), where f1 takes its top (the lowest attack score) and margin its middle."""
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    s = np.array([0.01, 0.02, 0.03, 0.05, 0.90, 0.95, 0.99])
    r = choose_threshold(y, s, "fpr", max_fpr=0.01)
    assert r["threshold"] == float(np.nextafter(0.05, 1.0)) and r["value"] == 1.0
    assert choose_threshold(y, s, "f1")["threshold"] == 0.90
    logit = np.log(np.array([0.05, 0.90]) / (1 - np.array([0.05, 0.90])))
    middle = 1 / (1 + np.exp(-logit.mean()))  # margin: the middle of the gap in logit space
    assert choose_threshold(y, s, "margin")["threshold"] == pytest.approx(middle)
    # moving the attack scores does not move it; moving the highest benign one does
    assert choose_threshold(y, s * np.array([1, 1, 1, 1, 0.6, 0.6, 0.6]), "fpr", max_fpr=0.01) == r
    s2 = s.copy()
    s2[3] = 0.2
    assert choose_threshold(y, s2, "fpr", max_fpr=0.01)["threshold"] == float(np.nextafter(0.2, 1.0))
    # a budget of one benign window in four (0.25): just above the second highest benign score
    assert choose_threshold(y, s, "fpr", max_fpr=0.25)["threshold"] == float(np.nextafter(0.03, 1.0))


def test_choose_threshold_fpr_when_top_score_is_benign():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.3, 0.2])
    r = choose_threshold(y, s, "fpr", max_fpr=0.0)
    assert r["threshold"] > 0.9 and r["value"] == 0.0 and r["fallback"] is False
    assert binary_metrics(y, s, r["threshold"])["fp"] == 0


@pytest.mark.parametrize("method", ["f1", "youden", "fpr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_choose_threshold_benign_only_fallback(method, dtype):
    s = np.linspace(0.0, 0.99, 100).astype(dtype)
    y = np.zeros(100, int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = choose_threshold(y, s, method, max_fpr=0.05)
    assert r["fallback"] is True and r["value"] is None
    if method == "fpr":
        # lowest threshold with at most 5 of 100 benign windows flagged: just above the 6th highest score
        assert r["threshold"] == float(np.nextafter(np.sort(s)[-6], dtype(np.inf)))
        assert np.count_nonzero(s >= dtype(r["threshold"])) == 5
    else:
        assert r["threshold"] > float(s.max())
        assert np.count_nonzero(s >= dtype(r["threshold"])) == 0  # also in the scores' own precision
    assert binary_metrics(y, s, r["threshold"])["fpr"] <= 0.05
    strict_json(r)


@pytest.mark.parametrize("method", ["f1", "youden", "fpr"])
def test_choose_threshold_attack_only_fallback(method):
    s = np.array([0.4, 0.7, 0.2, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = choose_threshold(np.ones(4, int), s, method)
    assert (r["threshold"], r["method"], r["value"], r["fallback"]) == (0.2, method, None, True)
    assert binary_metrics(np.ones(4, int), s, r["threshold"])["recall"] == 1.0


def test_choose_threshold_constant_scores():
    y = np.array([0, 1, 0, 1])
    s = np.full(4, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_threshold(y, s, "f1")["threshold"] == 0.25
        assert choose_threshold(y, s, "youden") == {
            "threshold": 0.25,
            "method": "youden",
            "value": 0.0,
            "fallback": False,
        }
        r = choose_threshold(y, s, "fpr", max_fpr=0.1)
    assert r["threshold"] > 0.25 and r["value"] == 0.0


def test_choose_threshold_errors():
    with pytest.raises(ValueError, match="empty"):
        choose_threshold([], [])
    with pytest.raises(ValueError, match="unknown threshold method"):
        choose_threshold([0, 1], [0.1, 0.2], "argmax")
    with pytest.raises(ValueError, match="max_fpr"):
        choose_threshold([0, 1], [0.1, 0.2], "fpr", max_fpr=1.5)


# --------------------------------------------------------------------------- curves


@pytest.mark.parametrize("max_points", [2, 7, 200])
def test_curve_points_downsampled(max_points):
    y, s = random_case(11, n=20_000, decimals=None)
    cp = curve_points(y, s, max_points=max_points)
    fpr, tpr, _ = skm.roc_curve(y, s)
    precision, recall, _ = skm.precision_recall_curve(y, s, drop_intermediate=True)
    roc, pr = cp["roc"], cp["pr"]
    assert len(fpr) > max_points
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) <= max_points
    assert len(pr["precision"]) == len(pr["recall"]) == len(pr["thresholds"]) <= max_points
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc["thresholds"][0] is None  # the "nothing flagged" point
    assert roc["thresholds"][-1] == pytest.approx(s.min())
    assert (pr["precision"][0], pr["recall"][0]) == (precision[0], recall[0])
    assert (pr["precision"][-1], pr["recall"][-1], pr["thresholds"][-1]) == (1.0, 0.0, None)
    # the points are points of the full curves, in order
    assert set(zip(roc["fpr"], roc["tpr"], strict=True)) <= set(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert all(np.diff(roc["fpr"]) >= 0) and all(np.diff(pr["recall"]) <= 0)
    if max_points == 200:
        # the low-FPR end is not starved: several points below FPR 5%
        assert sum(f < 0.05 for f in roc["fpr"]) >= 5
    strict_json(cp)


def test_curve_points_small_curve_is_complete():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    cp = curve_points(y, s)
    fpr, tpr, thr = skm.roc_curve(y, s)
    assert cp["roc"]["fpr"] == fpr.tolist() and cp["roc"]["tpr"] == tpr.tolist()
    assert cp["roc"]["thresholds"] == [None, *thr[1:].tolist()]
    p, r, t = skm.precision_recall_curve(y, s, drop_intermediate=True)
    assert cp["pr"] == {"precision": p.tolist(), "recall": r.tolist(), "thresholds": [*t.tolist(), None]}
    with pytest.raises(ValueError, match="max_points"):
        curve_points(y, s, max_points=1)


# --------------------------------------------------------------------------- seeds


def test_summarize_seeds():
    values = [0.951, 0.957, 0.950]
    d = summarize_seeds(values)
    assert d["n"] == 3
    assert d["mean"] == pytest.approx(np.mean(values))
    assert d["std"] == pytest.approx(np.std(values, ddof=1))
    assert format_mean_std(d) == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"
    assert format_mean_std({"mean": 0.95312, "std": 0.0041, "n": 3}) == "0.953 ± 0.004"
    assert format_mean_std({"mean": 0.95312, "std": 0.0041, "n": 3}, digits=2) == "0.95 ± 0.00"
    assert summarize_seeds([0.9]) == {"mean": 0.9, "std": None, "n": 1}  # one run has no spread
    assert format_mean_std(summarize_seeds([0.9])) == "0.900 (one value)"
    assert summarize_seeds([0.9, None, float("nan"), 0.8])["n"] == 2
    assert summarize_seeds([]) == {"mean": None, "std": None, "n": 0}
    assert summarize_seeds([None, None]) == {"mean": None, "std": None, "n": 0}
    assert format_mean_std(summarize_seeds([])) == "n/a"
    assert all(type(v) in (float, int) for v in d.values())
    strict_json(d)


# --------------------------------------------------------------------------- threshold policies


def test_margin_takes_the_middle_of_a_separating_gap_in_logit_space():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.001, 0.01, 0.2, 0.9998, 0.9999, 1.0])  # every threshold in (0.2, 0.9998] is perfect
    edge, middle = choose_threshold(y, s, "f1"), choose_threshold(y, s, "margin")
    assert edge["threshold"] == pytest.approx(0.9998) and edge["value"] == 1.0
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expected = 1 / (1 + np.exp(-(logit(0.2) + logit(0.9998)) / 2))
    assert middle["threshold"] == pytest.approx(expected) and 0.2 < middle["threshold"] < 0.9998
    assert middle["interval"] == pytest.approx([0.2, 0.9998]) and middle["space"] == "logit"
    assert binary_metrics(y, s, middle["threshold"])["f1"] == 1.0  # validation is predicted identically


def test_margin_with_ties_and_overlap_keeps_the_optimal_predictions():
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    s = np.array([0.1, 0.3, 0.3, 0.6, 0.6, 0.8, 0.8])  # ties across classes: the optimum flags >= 0.3
    edge, middle = choose_threshold(y, s, "f1"), choose_threshold(y, s, "margin")
    assert middle["value"] == pytest.approx(edge["value"])
    low, high = middle["interval"]
    assert low < middle["threshold"] <= high and high == edge["threshold"]
    same = {k: v for k, v in binary_metrics(y, s, middle["threshold"]).items() if k != "threshold"}
    assert same == {k: v for k, v in binary_metrics(y, s, edge["threshold"]).items() if k != "threshold"}


def test_margin_on_reconstruction_errors_is_a_geometric_midpoint():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.5, 2.0, 8.0, 30.0])
    r = choose_threshold(y, s, "margin")
    assert r["space"] == "log" and r["threshold"] == pytest.approx(4.0)  # sqrt(2 * 8)


def test_margin_above_an_error_of_exactly_zero_is_no_hair_above_zero():
    """The geometric mean of 0 (clipped to the smallest double) and 8 was about 1e-154: every benign window with
    any error at all would be flagged. The linear midpoint instead."""
    y = np.array([0, 0, 1, 1])
    s = np.array([0.0, 0.0, 8.0, 30.0])
    r = choose_threshold(y, s, "margin")
    assert r["space"] == "log" and r["threshold"] == pytest.approx(4.0)


def test_margin_when_the_optimum_flags_everything():
    y = np.array([1, 1, 0])
    s = np.array([0.5, 0.4, 0.9])  # the lone benign window scores highest: flag all (F1 0.8)
    r = choose_threshold(y, s, "margin")
    assert r["threshold"] == pytest.approx(0.4) and r["interval"] == pytest.approx([0.4, 0.4])


@pytest.mark.parametrize(
    ("policy", "parsed"),
    [
        ("f1", ("f1", {})),
        ("margin", ("margin", {})),
        ("youden", ("youden", {})),
        ("fpr:0.01", ("fpr", {"max_fpr": 0.01})),
    ],
)
def test_policies_parse(policy, parsed):
    assert parse_policy(policy) == parsed


@pytest.mark.parametrize("bad", ["fpr", "fpr:x", "fpr:2", "f1:0.1", "best"])
def test_bad_policies_are_refused(bad):
    with pytest.raises(ValueError, match="policy"):
        parse_policy(bad)
