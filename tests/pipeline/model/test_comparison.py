"""The paired comparison of two models on the same rows, on hand-made scores."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from pipeline.gate import GatePolicy
from pipeline.model.comparison import (
    RetrainingNoise,
    compare,
    retraining_noise,
    slice_table,
    widened,
)
from tests.helpers import scored

POLICY = GatePolicy()


def test_point_differences_are_the_metrics_differences():
    y, a, rng = scored()
    b = np.clip(a + rng.normal(0, 0.1, len(a)), 0.001, 0.999)
    auc, loss = compare(y, a, b, POLICY)
    assert auc.difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert loss.difference == pytest.approx(log_loss(y, a) - log_loss(y, b))
    assert auc.ci_low < auc.difference < auc.ci_high and auc.n == len(y)
    assert "paired bootstrap" in auc.method and "1000 resamples" in auc.method


def test_the_interval_is_seeded_and_covers_a_real_gain():
    y, a, rng = scored(signal=1.2)
    b = 1 / (1 + np.exp(-(0.6 * (2 * y - 1) + rng.normal(0, 1.5, len(y)))))
    first, _ = compare(y, a, b, POLICY)
    again, _ = compare(y, a, b, POLICY)
    other, _ = compare(y, a, b, GatePolicy(seed=1))
    assert first == again and first.ci_low != other.ci_low
    assert first.ci_low > 0  # a clearly better model is significantly better


def test_a_slice_that_regresses_is_named():
    y, a, rng = scored(n=4000, signal=1.2)
    b = 1 / (1 + np.exp(-(0.6 * (2 * y - 1) + rng.normal(0, 1.5, len(y)))))
    group = np.where(np.arange(len(y)) < 600, "small", "large")
    a = a.copy()
    a[group == "small"] = rng.permutation(a[group == "small"])  # no signal left there
    table = slice_table(y, a, b, {"origin": group}, POLICY)
    by = {s.value: s for s in table}
    assert by["small"].verdict == "regressed" and by["large"].verdict == "ok"
    assert by["small"].rows == 600
    tiny = slice_table(y, a, b, {"origin": np.where(np.arange(len(y)) < 100, "t", "u")}, POLICY)
    assert tiny[0].verdict == "skipped: 100 rows"


def test_the_vectorized_auc_equals_scikit_learn_on_each_resample():
    from pipeline.model.comparison import _Ranked, _weight_blocks

    y, a, _ = scored(n=500)
    a = np.round(a, 2)  # ties
    (w,) = list(_weight_blocks(len(y), 3, seed=4))
    got = _Ranked(y, a).auc(w)
    for k in range(3):
        rows = np.repeat(np.arange(len(y)), w[k].astype(int))
        assert got[k] == pytest.approx(roc_auc_score(y[rows], a[rows]))


def _members(y, rng, signals):
    """One column per member: scores with its own ``signal`` and noise."""
    return np.column_stack(
        [1 / (1 + np.exp(-(s * (2 * y - 1) + rng.normal(0, 1.5, len(y))))) for s in signals]
    )


def test_retraining_noise_is_two_retrains_difference_from_the_members_spread():
    y, a, rng = scored()
    assert retraining_noise(y, np.column_stack([a, a, a])) == RetrainingNoise(0.0, 2)
    spread = _members(y, rng, [0.8, 1.0, 1.2])
    aucs = [roc_auc_score(y, spread[:, j]) for j in range(3)]
    noise = retraining_noise(y, spread)
    # One ensemble of 3 moves by the members' spread over sqrt(3); a challenger and a champion
    # trained alike are one draw each, so their difference moves by sqrt(2) times that.
    assert noise.standard_error == pytest.approx(np.sqrt(2 * np.var(aucs, ddof=1) / 3))
    assert noise.dof == 2 and noise.to_dict() == {"standard_error": noise.standard_error, "dof": 2}
    assert retraining_noise(y, a[:, None]) is None  # one member: no estimate


def test_the_noise_quantile_is_students_t_for_the_members_count():
    assert RetrainingNoise(0.01, 2).quantile(0.95) == pytest.approx(4.302653)  # 3 members
    assert RetrainingNoise(0.01, 4).quantile(0.95) == pytest.approx(2.776445)  # 5 members
    assert RetrainingNoise(0.01, 10_000).quantile(0.95) == pytest.approx(1.96, abs=1e-3)


def test_widening_adds_the_noise_in_quadrature_on_each_side():
    y, a, rng = scored()
    b = np.clip(a + rng.normal(0, 0.1, len(a)), 0.001, 0.999)
    auc, _ = compare(y, a, b, POLICY)
    wide = widened(auc, RetrainingNoise(0.01, 2))
    assert wide.difference == auc.difference
    low = auc.difference - np.hypot(auc.difference - auc.ci_low, 4.302653 * 0.01)
    assert wide.ci_low == pytest.approx(low) and wide.ci_high > auc.ci_high
    assert "retraining noise" in wide.method and "t with 2 dof" in wide.method
    assert widened(auc, RetrainingNoise(0.0, 2)).ci_low == pytest.approx(auc.ci_low)
