"""The evaluation's plots (ROC, precision-recall, calibration) as PNG bytes, with Matplotlib."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from pipeline.model.metrics import average_precision, calibration_bins, pr_curve, roc_auc, roc_curve


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plots(y: np.ndarray, curves: dict[str, np.ndarray]) -> dict[str, bytes]:
    """ROC, precision-recall and calibration plots (PNG bytes) for one or more models."""
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
