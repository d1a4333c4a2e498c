"""Feature drift: the population stability index against the champion's training distribution."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.checks.drift import PSI_EPSILON, day_psi, decile_bins, psi, typical_day_psi
from pipeline.checks.shift import DRIFT_RULE, auc_by_day, drift_outcome
from pipeline.model.features import Preprocessor
from pipeline.model.metrics import roc_auc


def test_psi_of_identical_distributions_is_zero():
    shares = np.array([0.1, 0.2, 0.3, 0.4, 0.0])
    assert psi(shares, shares) == pytest.approx(0.0)


def test_psi_of_a_known_shift_is_the_hand_computed_value():
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 3
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(3))


def test_an_empty_bin_counts_as_epsilon():
    # training never saw bin 2: (0.9 - 1) ln 0.9 + (0.1 - 1e-4) ln(0.1 / 1e-4)
    expected = -0.1 * math.log(0.9) + (0.1 - PSI_EPSILON) * math.log(0.1 / PSI_EPSILON)
    assert psi([1.0, 0.0], [0.9, 0.1]) == pytest.approx(expected)


def test_psi_is_computed_for_many_days_at_once():
    got = psi([0.5, 0.5], np.array([[0.5, 0.5], [0.25, 0.75]]))
    assert got == pytest.approx([0.0, 0.25 * math.log(3)])


def test_decile_bins_are_right_closed_with_missing_last():
    cuts = np.array([1.0, 2.0, 3.0])
    assert decile_bins(np.array([0.5, 1.0, 1.5, 3.0, 9.0, np.nan, np.inf]), cuts).tolist() == [
        0, 0, 1, 2, 3, 4, 4
    ]  # fmt: skip


def _training(days: int = 10, rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * rows
    x = rng.normal(0, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "ts": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) // rows, "D"),
        "plan": rng.choice(["a", "b", "c", "rare"], n, p=[0.5, 0.3, 0.1999, 0.0001]),
        "x": x,
    })  # fmt: skip


def test_fit_keeps_deciles_shares_and_typical_day_psi_and_they_round_trip():
    frame = _training()
    prep = Preprocessor(["plan"], ["x"]).fit(frame)
    assert len(prep.deciles["x"]) == 9 and len(prep.decile_shares["x"]) == 11
    assert prep.decile_shares["x"][10] == pytest.approx(frame["x"].isna().mean())
    assert sum(prep.decile_shares["x"]) == pytest.approx(1.0)
    vocab = prep.vocabularies["plan"]
    shares = prep.category_shares["plan"]
    assert len(shares) == len(vocab) + 1 and sum(shares) == pytest.approx(1.0)
    assert shares[1 + vocab.index("a")] == pytest.approx((frame["plan"] == "a").mean())
    assert set(prep.typical_day_psi) == {"plan", "x"}
    assert 0 < prep.typical_day_psi["x"] < 0.2  # 200 rows a day of the same distribution
    again = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep
    # the check's bins give the training shares back: all training rows as one day
    codes = np.zeros(len(frame), dtype=np.int64)
    assert day_psi(prep, frame, codes, 1) == {"plan": pytest.approx([0]), "x": pytest.approx([0])}


def test_an_older_preprocessing_json_loads_and_drift_is_skipped_with_a_note():
    state = Preprocessor(["plan"], ["x"]).fit(_training()).to_dict()
    for key in ("deciles", "decile_shares", "category_shares", "typical_day_psi"):
        state.pop(key)
    old = Preprocessor.from_dict(state)
    assert old.decile_shares == {} and day_psi(old, _training(), np.zeros(2000, int), 1) == {}
    found = drift_outcome({}, {}, 10, "champion v1 has no training distribution")
    assert found.success and "skipped" in found.observed_value["note"]


def test_a_shifted_day_drifts_and_names_its_features():
    prep = Preprocessor(["plan"], ["x"]).fit(_training())
    day = _training(days=2, seed=1)
    day.loc[day.index >= 200, "x"] += 2.0  # the second day: x moved by 2 standard deviations
    codes = (day.index >= 200).astype(np.int64)
    values = day_psi(prep, day, codes, 2)
    assert values["x"][0] < 0.2 < values["x"][1]
    calm = drift_outcome({c: v[0] for c, v in values.items()}, prep.typical_day_psi, 200, None)
    moved = drift_outcome({c: v[1] for c, v in values.items()}, prep.typical_day_psi, 200, None)
    assert calm.success and calm.rule == DRIFT_RULE
    assert not moved.success and moved.severity == "WARN"
    assert moved.observed_value["drifting"][0][0] == "x"
    assert moved.observed_value["max_psi"] == pytest.approx(values["x"][1], abs=1e-4)


def test_typical_day_psi_needs_one_timestamp_column():
    frame = _training().drop(columns=["ts"])
    assert typical_day_psi(Preprocessor(["plan"], ["x"]).fit(frame), frame) == {}


def test_auc_by_day_equals_scikit_learns_with_ties():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4, 3000)
    y = (rng.random(3000) < 0.3).astype(float)
    p = np.round(rng.random(3000) * 0.5 + 0.3 * y, 2)  # ties on purpose
    y[codes == 3] = 1.0  # one class: NaN
    got = auc_by_day(y, p, codes, 5)  # day 4 has no rows: NaN
    for d in range(3):
        assert got[d] == pytest.approx(roc_auc(y[codes == d], p[codes == d]))
    assert np.isnan(got[3]) and np.isnan(got[4])
