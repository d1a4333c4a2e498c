"""Two models compared on the same rows: a metric's difference with its paired-bootstrap
interval over rows (the same resampled rows for both models, seeded), and per-slice AUCs.

Vectorized: a block of resamples is a matrix of row counts; each model's AUC under every resample
comes from one sort of its scores (tie groups counted half) and cumulative sums, and the
log-loss difference is one matrix product. On a 6k-row holdout with 1,000 resamples this takes a
few tenths of a second, where a loop over resamples with scikit-learn takes seconds
(``benchmarks/gate.py`` measures both).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.gate import GatePolicy  # resamples, seed, confidence and the slice limits

CHUNK = 200  # resamples per block: bounds the weight matrix at 200 x rows
EPS = 1e-7


@dataclass(frozen=True)
class Comparison:
    """``a - b`` of one metric on the same rows, with its paired-bootstrap interval."""

    metric: str
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SliceResult:
    column: str
    value: str
    rows: int
    challenger_auc: float
    champion_auc: float
    verdict: str  # "ok", "regressed", or "skipped: ..." (too few rows, one class)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weight_blocks(n: int, resamples: int, seed: int):
    """Bootstrap resamples as row counts, ``(block, n)`` float64 each: row i drawn k times."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        size = min(CHUNK, resamples - done)
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        yield np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


class _Ranked:
    """One model's scores sorted once, with their tie groups, for weighted AUCs."""

    def __init__(self, y: np.ndarray, s: np.ndarray):
        self.order = np.argsort(s, kind="mergesort")
        ranked = s[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        self.y = y[self.order]

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """ROC-AUC under each row of ``weights`` ``(block, n)``, ties counted half."""
        w = weights[:, self.order]  # (block, n), in score order
        pos = np.add.reduceat(w * self.y, self.starts, axis=1)  # (block, groups)
        neg = np.add.reduceat(w * (1.0 - self.y), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each group
        hits = (pos * (below + 0.5 * neg)).sum(axis=1)
        return hits / (pos.sum(axis=1) * neg.sum(axis=1))


def _interval(diffs: np.ndarray, point: float, metric: str, n: int, policy: GatePolicy):
    tail = (1.0 - policy.confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    method = f"paired bootstrap over rows, {policy.resamples} resamples, seed {policy.seed}"
    return Comparison(metric, float(point), float(low), float(high), policy.confidence, n, method)


def compare(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, policy: GatePolicy
) -> tuple[Comparison, Comparison]:
    """``a - b`` in ROC-AUC and in log loss on the same rows, each with its interval.

    ``y`` must hold both classes. Every resample draws the same rows for both models.
    """
    y = np.asarray(y, dtype=np.float64)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(y)
    ranked_a, ranked_b = _Ranked(y, a), _Ranked(y, b)
    ones = np.ones((1, n))
    auc_point = float(ranked_a.auc(ones)[0] - ranked_b.auc(ones)[0])
    extra_loss = _row_log_loss(y, a) - _row_log_loss(y, b)  # (n,)
    auc_diffs, loss_diffs = [], []
    for w in _weight_blocks(n, policy.resamples, policy.seed):
        both = (w @ y > 0) & (w @ (1.0 - y) > 0)  # a resample of one class has no AUC
        auc_diffs.append((ranked_a.auc(w) - ranked_b.auc(w))[both])
        loss_diffs.append(w @ extra_loss / n)
    auc = _interval(np.concatenate(auc_diffs), auc_point, "roc_auc", n, policy)
    loss = _interval(np.concatenate(loss_diffs), float(extra_loss.mean()), "log_loss", n, policy)
    return auc, loss


@dataclass(frozen=True)
class RetrainingNoise:
    """How much two retrains of the same training differ in ROC-AUC, from one model's members."""

    standard_error: float  # of the AUC difference between two such retrains
    dof: int  # degrees of freedom of the estimate: the member count less one

    def quantile(self, confidence: float) -> float:
        """Student's t for the estimate's few degrees of freedom: with 3 members the spread
        of their AUCs is itself uncertain (2 dof: t is 4.30 at 95%, where the normal says 1.96),
        and the normal quantile let a seed whose members happened to agree pass as a gain."""
        from scipy.stats import t  # scikit-learn's own dependency; loaded when it is needed

        return float(t.ppf(0.5 + confidence / 2.0, self.dof))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retraining_noise(y: np.ndarray, members: np.ndarray) -> RetrainingNoise | None:
    """The retraining noise of a model's AUC on the rows ``y``, or None with one member.

    ``members`` holds ``(rows, members)`` scores of the model's ensemble members. The members
    are independent trainings on the same rows (their own starts and dropout), so the spread of
    their AUCs measures how much a retrain with another seed moves the AUC: an ensemble of ``m``
    members moves by that spread over sqrt(m). Two such retrains (a champion and a challenger
    trained alike on the same data) differ by sqrt(2) times that: both are one draw each.
    """
    members = np.asarray(members, dtype=np.float64)
    if members.ndim != 2 or members.shape[1] < 2:
        return None
    y = np.asarray(y, dtype=np.float64)
    m = members.shape[1]
    aucs = [_auc(y, members[:, j]) for j in range(m)]
    return RetrainingNoise(math.sqrt(2.0 * float(np.var(aucs, ddof=1)) / m), m - 1)


def widened(c: Comparison, noise: RetrainingNoise) -> Comparison:
    """``c`` with each side of its interval widened by the retraining ``noise`` in quadrature
    (the rows' sampling and the retraining, taken as independent): the noise's part is its
    standard error times its Student's t quantile at ``c.confidence``."""
    half = noise.quantile(c.confidence) * noise.standard_error
    return replace(
        c,
        ci_low=c.difference - math.hypot(c.difference - c.ci_low, half),
        ci_high=c.difference + math.hypot(c.ci_high - c.difference, half),
        method=f"{c.method}, widened by the retraining noise from the challenger's members'"
        f" spread (standard error {noise.standard_error:.4f} between two retrains,"
        f" t with {noise.dof} dof)",
    )


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    return -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(_Ranked(y, s).auc(np.ones((1, len(y))))[0])


def slice_table(
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    slices: dict[str, np.ndarray],
    policy: GatePolicy,
) -> list[SliceResult]:
    """Challenger (``a``) and champion (``b``) AUC on every value of every slice column.

    A value regresses when the challenger's AUC is below the champion's by more than
    ``max_slice_drop`` and the drop is significant (the upper bound of the slice's paired
    interval is below 0): on a slice of a few hundred rows, two retrains with different seeds
    differ by several hundredths of AUC by chance alone, which a point estimate would take for
    a regression.
    """
    out = []
    for column, values in slices.items():
        values = pd.Series(values).astype(str).to_numpy()
        for value in sorted(set(values)):
            rows = values == value
            n = int(rows.sum())
            y_s = y[rows]
            if n < policy.min_slice_rows or y_s.min() == y_s.max():
                why = f"skipped: {n} rows" if n < policy.min_slice_rows else "skipped: one class"
                out.append(SliceResult(column, value, n, float("nan"), float("nan"), why))
                continue
            ch, champ = _auc(y_s, a[rows]), _auc(y_s, b[rows])
            verdict = "ok"
            if ch < champ - policy.max_slice_drop:
                auc, _ = compare(y_s, a[rows], b[rows], policy)
                verdict = "regressed" if auc.ci_high < 0.0 else "ok (drop not significant)"
            out.append(SliceResult(column, value, n, ch, champ, verdict))
    return out


def auc_resamples(y: np.ndarray, s: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """ROC-AUC of scores ``s`` under each of ``resamples`` bootstrap resamples of the rows
    (seeded, vectorized as in :func:`compare`); a resample of one class is left out."""
    y, s = np.asarray(y, dtype=np.float64), np.asarray(s, dtype=np.float64)
    ranked, out = _Ranked(y, s), []
    for w in _weight_blocks(len(y), resamples, seed):
        both = (w @ y > 0) & (w @ (1.0 - y) > 0)
        out.append(ranked.auc(w)[both])
    return np.concatenate(out)


def compare_independent(
    y_a: np.ndarray, s_a: np.ndarray, y_b: np.ndarray, s_b: np.ndarray, policy: GatePolicy
) -> Comparison:
    """ROC-AUC on rows ``a`` minus ROC-AUC on other rows ``b`` (e.g. live days against the
    holdout), with a bootstrap interval that resamples each set on its own (seeded)."""
    a = auc_resamples(y_a, s_a, policy.resamples, policy.seed)
    b = auc_resamples(y_b, s_b, policy.resamples, policy.seed + 1)
    k = min(len(a), len(b))
    point = _auc(np.asarray(y_a, float), np.asarray(s_a, float)) - _auc(
        np.asarray(y_b, float), np.asarray(s_b, float)
    )
    found = _interval(a[:k] - b[:k], point, "roc_auc", len(y_a), policy)
    method = (
        f"independent bootstraps of both sets, {policy.resamples} resamples, seed {policy.seed}"
    )
    return Comparison(found.metric, found.difference, found.ci_low, found.ci_high,
                      found.confidence, found.n, method)  # fmt: skip
