import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline.model import metrics


@pytest.fixture(params=[0, 1, 2])
def scored(request):
    rng = np.random.default_rng(request.param)
    y = (rng.random(500) < 0.3).astype(float)
    p = 0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, 500)
    p[:50] = np.round(p[:50], 1)  # some ties
    return y, np.clip(p, 0.001, 0.999)


def test_roc_auc_matches_scikit_learn(scored):
    y, p = scored
    assert metrics.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p))


def test_average_precision_matches_scikit_learn(scored):
    y, p = scored
    assert metrics.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p))


def test_losses_match_scikit_learn(scored):
    y, p = scored
    assert metrics.log_loss(y, p) == pytest.approx(skm.log_loss(y, p))
    assert metrics.brier(y, p) == pytest.approx(skm.brier_score_loss(y, p))


def test_threshold_metrics_match_scikit_learn(scored):
    y, p = scored
    got = metrics.threshold_metrics(y, p, 0.35)
    pred = p >= 0.35
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert got["confusion_matrix"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_best_f1_threshold_is_the_best(scored):
    y, p = scored
    best = metrics.best_f1_threshold(y, p)
    f1_best = metrics.threshold_metrics(y, p, best)["f1"]
    for t in np.linspace(0.05, 0.95, 19):
        assert metrics.threshold_metrics(y, p, t)["f1"] <= f1_best + 1e-12


def test_ece_is_zero_when_calibrated_and_positive_otherwise():
    y = np.array([0, 1] * 50, dtype=float)
    assert metrics.expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)


def test_prior_baseline_and_one_class():
    y = np.array([0, 0, 0, 1], dtype=float)
    base = metrics.prior_baseline(y, 0.25)
    assert base["roc_auc"] == 0.5
    assert base["log_loss"] == pytest.approx(skm.log_loss(y, np.full(4, 0.25)))
    assert np.isnan(metrics.roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_hand_computed_case():
    """Four rows worked out by hand: one positive ranked below one negative."""
    y = np.array([0, 0, 1, 1], dtype=float)
    p = np.array([0.1, 0.6, 0.4, 0.8])
    assert metrics.roc_auc(y, p) == pytest.approx(3 / 4)  # 3 of the 4 pairs ordered right
    assert metrics.average_precision(y, p) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))
    want = -np.mean(np.log([0.9, 0.4, 0.4, 0.8]))
    assert metrics.log_loss(y, p) == pytest.approx(want)
    assert metrics.brier(y, p) == pytest.approx((0.01 + 0.36 + 0.36 + 0.04) / 4)
    got = metrics.threshold_metrics(y, p, 0.5)
    assert got["confusion_matrix"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 1}
    assert (got["precision"], got["recall"], got["accuracy"]) == (0.5, 0.5, 0.5)
    assert metrics.best_f1_threshold(y, p) == pytest.approx(0.4)  # F1 0.8 at 0.4


def test_ties_count_half_and_scores_of_zero_or_one_stay_finite():
    y = np.array([0, 1], dtype=float)
    assert metrics.roc_auc(y, np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isfinite(metrics.log_loss(y, np.array([1.0, 0.0])))
