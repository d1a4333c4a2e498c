"""Classification metrics and plots, in NumPy and Matplotlib (no scikit-learn at run time)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = np.asarray(p)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first."""
    order = np.argsort(-np.asarray(p), kind="mergesort")
    y_sorted = np.asarray(y, dtype=np.float64)[order]
    p_sorted = np.asarray(p)[order]
    last = np.r_[np.nonzero(np.diff(p_sorted))[0], len(p_sorted) - 1]
    tps = np.cumsum(y_sorted)[last]
    fps = (last + 1) - tps
    return tps, fps, p_sorted[last]


def roc_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tps, fps, _ = _curve(y, p)
    return np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)]


def pr_curve(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each threshold."""
    tps, fps, _ = _curve(y, p)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(tps[-1], 1)
    return np.r_[0.0, recall], np.r_[1.0, precision]


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """PR-AUC as average precision (the step-wise sum, as scikit-learn computes it)."""
    if not np.any(y):
        return float("nan")
    recall, precision = pr_curve(y, p)
    return float(np.sum(np.diff(recall) * precision[1:]))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability: mean prediction, observed rate, count."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append(
                {"mean_predicted": float(p[mask].mean()), "observed_rate": float(y[mask].mean()),
                 "count": int(mask.sum())}
            )  # fmt: skip
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    n = len(y)
    return float(
        sum(b["count"] / n * abs(b["mean_predicted"] - b["observed_rate"])
            for b in calibration_bins(y, p, bins))
    )  # fmt: skip


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold that maximizes F1 on (y, p); 0.5 when y has no positives."""
    if len(y) == 0 or not np.any(y):
        return 0.5
    tps, fps, thresholds = _curve(y, p)
    f1 = 2 * tps / np.maximum(tps + fps + tps[-1], 1)
    return float(thresholds[int(np.argmax(f1))])


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = p >= threshold
    y = y.astype(bool)
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(y), 1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
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


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plots(y: np.ndarray, curves: dict[str, np.ndarray]) -> dict[str, str]:
    """ROC, precision-recall and calibration plots (base64 PNG) for one or more models."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        fpr, tpr = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", label="prior")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    out["roc"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        recall, precision = pr_curve(y, p)
        ax.plot(recall, precision, label=f"{name} (AP {average_precision(y, p):.3f})")
    ax.axhline(float(np.mean(y)), color="k", linestyle=":", label="prior")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="upper right", fontsize=8)
    out["precision_recall"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, p in curves.items():
        bins = calibration_bins(y, p)
        ax.plot([b["mean_predicted"] for b in bins], [b["observed_rate"] for b in bins], "o-",
                label=name)  # fmt: skip
    ax.plot([0, 1], [0, 1], "k:", label="perfect")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title="Calibration")
    ax.legend(loc="upper left", fontsize=8)
    out["calibration"] = _png(fig)
    plt.close(fig)
    return out
