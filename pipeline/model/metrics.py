"""Classification metrics: scikit-learn's where it has them, hand-written where it does not."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn import metrics as skm

EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); NaN when ``y`` holds one class."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(skm.roc_auc_score(y, p))


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at each distinct threshold, from (0, 0)."""
    with warnings.catch_warnings():  # one class: scikit-learn warns and returns NaN rates
        warnings.simplefilter("ignore")
        fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    return np.nan_to_num(fpr), np.nan_to_num(tpr)


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each threshold, from recall 0."""
    precision, recall, _ = skm.precision_recall_curve(y, p, drop_intermediate=False)
    return recall[::-1], precision[::-1]


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as average precision; NaN when ``y`` has no positive."""
    if not np.any(y):
        return float("nan")
    return float(skm.average_precision_score(y, p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy; scores clipped to [EPS, 1 - EPS] (a score of 0 or 1 is finite)."""
    return float(skm.log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1]))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(skm.brier_score_loss(y, p, pos_label=1))


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability: mean prediction, observed rate, count.

    Hand-written: scikit-learn's ``calibration_curve`` drops the counts, which both the
    expected calibration error and the plot need.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    idx = np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    mean_p = np.bincount(idx, weights=p, minlength=bins)
    rate = np.bincount(idx, weights=y, minlength=bins)
    return [
        {"mean_predicted": float(mean_p[b] / count[b]), "observed_rate": float(rate[b] / count[b]),
         "count": int(count[b])}
        for b in range(bins) if count[b]
    ]  # fmt: skip


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean gap between predicted and observed rates (no scikit-learn metric)."""
    n = len(y)
    return float(
        sum(b["count"] / n * abs(b["mean_predicted"] - b["observed_rate"])
            for b in calibration_bins(y, p, bins))
    )  # fmt: skip


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold that maximizes F1 on (y, p); 0.5 when y has no positives."""
    if len(y) == 0 or not np.any(y):
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    # The curve's last point (recall 0) has no threshold.
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = np.asarray(p) >= threshold
    y = np.asarray(y).astype(bool)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[False, True]).ravel())
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, pred, average="binary", zero_division=0.0
    )
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(y), 1),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """All of the report's metrics for labels ``y`` (0/1) and scores ``p``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("cannot evaluate on zero rows")
    return {
        "rows": len(y),
        "positive_rate": float(y.mean()),
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        "ece": expected_calibration_error(y, p),
        **threshold_metrics(y, p, threshold),
    }


def prior_baseline(y: np.ndarray, prior: float) -> dict[str, float]:
    """A model that always predicts the training positive rate ``prior``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.full(len(y), prior)
    return {
        "prior": float(prior),
        "roc_auc": 0.5,
        "pr_auc": float(y.mean()) if len(y) else float("nan"),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
    }
