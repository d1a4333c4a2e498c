import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.cleaning import QUARANTINE_REASON, CleaningError, clean_day
from pipeline.data.lagged import lagged_rates
from pipeline.task import load_task, parse_task
from tests.helpers import CHURN_TASK

DAY = dt.date(2025, 3, 10)


def _spec(**label):
    data = {**CHURN_TASK, "source": {"kind": "files", "path": "x"}}
    if label:
        data = {**data, "label": label}
    return parse_task(data)


def _rows(n: int, day: dt.date = DAY, **overrides) -> pd.DataFrame:
    base = pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=1)
    frame = pd.DataFrame(
        {
            "event_time": [base + pd.Timedelta(minutes=i) for i in range(n)],
            "customer_id": range(n),
            "plan": ["basic"] * n,
            "region": ["south"] * n,
            "usage": [1.0] * n,
            "tenure": [3.0] * n,
            "support_calls_after": [0] * n,
            "churned": ["NO"] * n,
        }
    )
    for col, values in overrides.items():
        frame[col] = values
    return frame


def test_clean_rows_get_label_and_types():
    raw = _rows(3, churned=["YES", "NO", "YES"], usage=["1.5", 2, None])
    out = clean_day(raw, DAY, _spec()).features
    assert list(out["label"]) == [1, 0, 1]
    assert out["usage"].dtype == np.float64 and np.isnan(out["usage"].iloc[2])
    assert list(out["calendar_day_of_week"]) == [str(DAY.weekday())] * 3
    assert "support_calls_after" not in out.columns and "customer_id" not in out.columns


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"event_time": ["not a time", "2025-03-10T05:00:00Z"]}, "does not parse"),
        ({"event_time": ["2025-03-09T23:00:00Z", "2025-03-10T05:00:00Z"]}, "is not on 2025-03-10"),
        ({"usage": ["many", 1.0]}, "'usage' is not a number"),
        ({"usage": [float("inf"), 1.0]}, "'usage' is infinite"),
        ({"churned": [None, "NO"]}, "'churned' is missing"),
    ],
)
def test_bad_rows_are_quarantined_with_reason(overrides, reason):
    result = clean_day(_rows(2, **overrides), DAY, _spec())
    assert len(result.features) == 1
    assert len(result.quarantine) == 1
    assert reason in result.quarantine[QUARANTINE_REASON].iloc[0]
    # The quarantined row keeps every raw column.
    assert set(_rows(1).columns) <= set(result.quarantine.columns)


def test_missing_label_is_positive_when_the_task_says_so():
    spec = load_task()  # flights: missing arr_delay means cancelled, a positive
    raw = pd.DataFrame(
        {
            "time_hour": pd.to_datetime(["2025-03-10T10:00:00Z"] * 3),
            "arr_delay": [30.0, None, 3.0],
            **{c: ["x"] * 3 for c in spec.categorical},
            **{c: [1.0] * 3 for c in spec.numeric},
        }
    )
    out = clean_day(raw, DAY, spec)
    assert list(out.features["label"]) == [1, 1, 0]
    assert out.quarantine.empty


def test_missing_label_column_fails_naming_partition_and_column():
    with pytest.raises(CleaningError, match=r"partition 2025-03-10: .*'churned'"):
        clean_day(_rows(2).drop(columns=["churned"]), DAY, _spec())


def test_empty_day_is_valid():
    out = clean_day(_rows(0), DAY, _spec())
    assert len(out.features) == 0 and len(out.quarantine) == 0


def test_lagged_rates_use_only_days_strictly_before():
    spec = _spec()
    history = pd.concat(
        [
            _rows(4, DAY - dt.timedelta(days=1), churned=["YES", "NO", "NO", "NO"]),
            _rows(2, DAY - dt.timedelta(days=3), churned=["YES", "YES"]),
            _rows(5, DAY - dt.timedelta(days=4), churned=["YES"] * 5),  # outside 3 days
            _rows(5, DAY, churned=["YES"] * 5),  # the day itself: never counted
        ]
    )
    rates = lagged_rates(DAY, history, spec, spec.lagged_rates[0])
    assert rates.set_index("region")["rate_region_3d"]["south"] == pytest.approx(3 / 6)
    out = clean_day(_rows(2, churned=["YES", "YES"]), DAY, spec, history).features
    assert out["rate_region_3d"].tolist() == pytest.approx([0.5, 0.5])


def test_lagged_rate_is_missing_for_unseen_group():
    spec = _spec()
    history = _rows(3, DAY - dt.timedelta(days=1))
    out = clean_day(_rows(1, region=["north"]), DAY, spec, history).features
    assert np.isnan(out["rate_region_3d"].iloc[0])
