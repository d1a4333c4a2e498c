"""The rules of promotion on live traffic, on hand-made score vectors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline.gate import GatePolicy
from pipeline.shadow import (
    PASS,
    PROMOTE,
    REJECT,
    ROLLBACK,
    WAIT,
    ShadowPolicy,
    age_in_days,
    decide_candidate,
    decide_probation,
)
from tests.helpers import scored

POLICY = GatePolicy(resamples=500)
SHADOW = ShadowPolicy()  # 200 labels, 7 days, probation 200


def _pair(n: int, better: float, seed: int = 0):
    """Labels, a champion with signal 1 and another model with signal 1 + ``better``, the
    same noise on both (paired, as two models on the same requests are)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    noise = rng.normal(0, 1.5, n)
    champion = 1 / (1 + np.exp(-(1.0 * (2 * y - 1) + noise)))
    other = 1 / (1 + np.exp(-((1.0 + better) * (2 * y - 1) + noise)))
    return y, other, champion


def test_too_few_labels_waits_and_is_rejected_as_not_proven_when_time_is_up():
    y, better, champion = _pair(199, better=2.0)
    waiting = decide_candidate(y, better, champion, POLICY, SHADOW, age_days=1.0)
    assert waiting.action == WAIT and "199 of 200" in waiting.reason
    assert waiting.comparison is None
    late = decide_candidate(y, better, champion, POLICY, SHADOW, age_days=7.0)
    assert late.action == REJECT and "not proven after 7.0 days" in late.reason


def test_one_class_alone_is_not_judged():
    y = np.zeros(300)
    s = np.linspace(0.1, 0.9, 300)
    assert decide_candidate(y, s, s[::-1], POLICY, SHADOW, 0.0).action == WAIT
    assert decide_probation(y, s, s[::-1], POLICY, SHADOW).action == WAIT


def test_a_tie_keeps_waiting_and_a_tie_at_the_deadline_is_rejected():
    y, a, _ = scored(n=400)
    tie = decide_candidate(y, a, a.copy(), POLICY, SHADOW, age_days=2.0)
    assert tie.action == WAIT and tie.comparison.difference == 0.0
    assert tie.comparison.ci_low == tie.comparison.ci_high == 0.0
    late = decide_candidate(y, a, a.copy(), POLICY, SHADOW, age_days=8.0)
    assert late.action == REJECT and "neither significantly better nor worse" in late.reason
    # and a champion on probation that ties with the previous one passes
    assert decide_probation(y, a, a.copy(), POLICY, SHADOW).action == PASS


@pytest.mark.parametrize(("better", "action"), [(1.5, PROMOTE), (-0.9, REJECT)])
def test_clearly_better_is_promoted_and_clearly_worse_rejected(better, action):
    y, other, champion = _pair(400, better)
    decision = decide_candidate(y, other, champion, POLICY, SHADOW, age_days=0.5)
    assert decision.action == action, decision.reason
    c = decision.comparison
    assert (c.ci_low > 0) if action == PROMOTE else (c.ci_high < 0)
    assert decision.figures()["labels"] == 400 and decision.figures()["log_loss"]["n"] == 400


def test_as_good_on_auc_and_significantly_better_on_log_loss_is_promoted():
    y, a, _ = scored(n=2000, signal=1.5)
    # the same ranking (so the same ROC-AUC), but the champion's probabilities overconfident
    logit = np.log(a / (1 - a))
    champion = 1 / (1 + np.exp(-3.0 * logit))
    decision = decide_candidate(y, a, champion, POLICY, SHADOW, age_days=1.0)
    assert decision.comparison.difference == pytest.approx(0.0, abs=1e-12)
    assert decision.action == PROMOTE and "significantly better on log loss" in decision.reason
    # the other way round it is significantly worse on log loss: rejected
    reverse = decide_candidate(y, champion, a, POLICY, SHADOW, age_days=1.0)
    assert reverse.action == REJECT and "worse on log loss" in reverse.reason


def test_probation_waits_for_its_labels_then_rolls_back_only_a_worse_champion():
    y, worse, previous = _pair(400, better=-0.9)
    few = decide_probation(y[:150], worse[:150], previous[:150], POLICY, SHADOW)
    assert few.action == WAIT and "150 of 200" in few.reason
    bad = decide_probation(y, worse, previous, POLICY, SHADOW)
    assert bad.action == ROLLBACK and bad.comparison.ci_high < 0, bad.reason
    y, better, previous = _pair(400, better=0.5)
    assert decide_probation(y, better, previous, POLICY, SHADOW).action == PASS


def test_age_in_days():
    now = dt.datetime(2026, 1, 8, 12, tzinfo=dt.UTC)
    assert age_in_days("2026-01-01T12:00:00+00:00", now) == pytest.approx(7.0)
    assert age_in_days("2026-01-08T00:00:00", now) == pytest.approx(0.5)
