"""Live performance: the join of predictions to their labels, the day's figures against a
hand-computed case, and the check against the holdout."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.data.cleaning import clean_day
from pipeline.gate import SCORES_FILE, GatePolicy
from pipeline.labelled import LABEL_SOURCE
from pipeline.live import live_metrics, live_rows
from pipeline.live_check import judge_live
from pipeline.serving.features import records_for_api
from pipeline.task import LABEL_COLUMN, parse_task
from tests.helpers import CHURN_START, CHURN_TASK, make_churn_frame


def _rows(scores, labels, versions=None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction_id": [f"p{i}" for i in range(len(scores))],
            "model_version": versions or ["v1"] * len(scores),
            "score": scores,
            LABEL_COLUMN: labels,
            LABEL_SOURCE: ["feedback" if y == y else "" for y in labels],
        }
    )


def test_live_metrics_against_a_hand_computed_day():
    rows = _rows([0.9, 0.2, 0.6, 0.4, 0.5], [1, 0, 0, 1, np.nan])
    m = live_metrics(rows, "v1")
    assert (m.predictions, m.labelled, m.labelled_share) == (5, 4, 0.8)
    assert m.roc_auc is None  # 2 of each class: fewer than 20
    # -(ln 0.9 + ln 0.8 + ln 0.4 + ln 0.4) / 4
    assert m.log_loss == pytest.approx(-(math.log(0.9) + math.log(0.8) + 2 * math.log(0.4)) / 4)
    assert m.brier == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    assert m.ece == pytest.approx((0.1 + 0.2 + 0.6 + 0.6) / 4)  # one row per bin
    assert m.positive_rate == 0.5 and m.mean_score == pytest.approx(0.52)


def test_live_roc_auc_once_both_classes_have_20_labels():
    # 20 positives at 0.7; 15 negatives at 0.3 (below) and 5 at 0.9 (above): AUC 15/20.
    rows = _rows([0.7] * 20 + [0.3] * 15 + [0.9] * 5, [1] * 20 + [0] * 20)
    assert live_metrics(rows, "v1").roc_auc == pytest.approx(0.75)
    assert live_metrics(rows.iloc[1:], "v1").roc_auc is None  # 19 positives


def test_a_prediction_takes_the_matured_batch_label_else_its_feedback():
    spec = parse_task(CHURN_TASK)
    raw = make_churn_frame(days=1)
    day = CHURN_START
    records = records_for_api(raw.iloc[:3], spec)
    truth = (raw["churned"].iloc[:3] == "YES").astype(int).to_numpy()
    scored = pd.DataFrame(
        {
            "prediction_id": ["a", "b", "c"],
            "model_version": "v1",
            "score": [0.1, 0.2, 0.3],
            "record": records,
            # a: feedback says the opposite of the batch; b: feedback agrees; c: none
            "feedback_label": [1.0 - truth[0], float(truth[1]), np.nan],
        }
    )
    unmatured = live_rows(spec, scored, day, batch=None)
    assert unmatured[LABEL_SOURCE].tolist() == ["feedback", "feedback", ""]
    assert unmatured[LABEL_COLUMN].iloc[0] == 1 - truth[0] and np.isnan(unmatured[LABEL_COLUMN][2])
    batch = clean_day(raw, day, spec).features
    matured = live_rows(spec, scored, day, batch=batch)
    assert matured[LABEL_SOURCE].tolist() == ["batch"] * 3  # the batch wins, and fills c
    assert matured[LABEL_COLUMN].tolist() == truth.astype(float).tolist()
    assert live_rows(spec, scored, day + dt.timedelta(days=1), batch).empty  # another day


def test_the_check_warns_only_when_live_auc_is_significantly_below_the_holdout(tmp_path):
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.3).astype(float)
    good = 1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, 1.5, 2000))))
    pd.DataFrame({"y": y, "challenger": good}).to_parquet(tmp_path / SCORES_FILE)
    policy = GatePolicy(resamples=300)
    same = _rows(list(good[:800]), list(y[:800]))
    assert judge_live(same, ["d"], "v1", tmp_path, policy).passed
    noise = rng.random(800)  # the world moved: scores no longer rank
    worse = _rows(list(noise), list(y[:800]))
    verdict = judge_live(worse, ["d"], "v1", tmp_path, policy)
    assert not verdict.passed and "significantly below its holdout" in verdict.reason
    assert verdict.comparison.ci_high < 0
    few = _rows([0.5] * 30, [1] * 25 + [0] * 5)
    verdict = judge_live(few, ["d"], "v1", tmp_path, policy)
    assert verdict.passed and "fewer than 20 of a class" in verdict.reason
