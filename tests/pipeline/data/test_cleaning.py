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


def _straightforward_rates(day, history, spec, rule, rows):
    """The lagged rate of each of ``rows``, by hand: a loop over the history's rows."""
    start = pd.Timestamp(day - dt.timedelta(days=rule.days), tz="UTC")
    end = pd.Timestamp(day, tz="UTC")
    positive = {str(v) for v in spec.label.positive_values}
    sums: dict[tuple, list[float]] = {}
    for _, row in history.iterrows():
        key = tuple(row[c] for c in rule.by)
        label = row[spec.label.column]
        if any(pd.isna(k) for k in key) or pd.isna(label) or not start <= row["event_time"] < end:
            continue  # no group, a missing label (unusable), or outside the window
        sums.setdefault(tuple(map(str, key)), []).append(float(str(label) in positive))
    out = []
    for _, row in rows.iterrows():
        seen = sums.get(tuple(str(row[c]) for c in rule.by))
        out.append(sum(seen) / len(seen) if seen else np.nan)
    return out


def test_fast_lagged_rates_equal_a_straightforward_computation():
    """clean_day's rates (one factorize and bincount per rule, from per-day pieces) are those of
    a plain loop, for one and two key columns, missing keys and labels, unusable labels, rows
    outside the window or on the day itself, and pieces that are cut by the window."""
    from pipeline.data.lagged import HistoryPiece, history_pieces

    data = {**CHURN_TASK, "source": {"kind": "files", "path": "x"}}
    data["features"] = {
        **data["features"],
        "lagged_rates": [{"by": ["region"], "days": 3}, {"by": ["region", "plan"], "days": 2}],
    }
    spec = parse_task(data)
    rng = np.random.default_rng(7)
    days = [DAY - dt.timedelta(days=k) for k in range(5, -1, -1)]  # 5 days before, and DAY
    frames = []
    for d in days:
        n = 40
        frame = _rows(n, d)
        frame["event_time"] = frame["event_time"] + pd.to_timedelta(
            rng.integers(-30, 30, n), unit="h"
        )  # some rows fall on the neighbouring days
        frame["region"] = rng.choice(["north", "south", "east", None], n)
        frame["plan"] = rng.choice(["basic", "pro"], n)
        frame["churned"] = rng.choice(["YES", "NO", "MAYBE", None], n)  # MAYBE: a negative
        frames.append(frame)
    history = pd.concat(frames, ignore_index=True)
    today = _rows(30, region=rng.choice(["north", "south", "east", "west", None], 30),
                  plan=rng.choice(["basic", "pro", "gold"], 30))  # fmt: skip
    as_frame = clean_day(today, DAY, spec, history)
    as_pieces = clean_day(today, DAY, spec, [HistoryPiece.of(f, spec) for f in frames])
    pd.testing.assert_frame_equal(as_frame.features, as_pieces.features, check_exact=True)
    assert len(history_pieces(history.iloc[0:0], spec)) == 0
    clean = today.loc[~today.index.isin(as_frame.quarantine.index)]  # no row is quarantined
    assert len(clean) == len(today)
    for rule in spec.lagged_rates:
        expected = _straightforward_rates(DAY, history, spec, rule, today)
        got = as_frame.features[rule.feature_name].tolist()
        assert np.allclose(got, expected, equal_nan=True, rtol=0, atol=0), rule
        reference = lagged_rates(DAY, history, spec, rule).set_index(list(rule.by))
        index = today[list(rule.by)].astype(str)
        index = index.iloc[:, 0] if len(rule.by) == 1 else pd.MultiIndex.from_frame(index)
        by_table = reference[rule.feature_name].reindex(index).to_numpy()
        assert np.array_equal(got, by_table, equal_nan=True), rule


@pytest.mark.parametrize("alike", [True, False])
def test_build_features_day_with_a_reader_equals_clean_day_on_the_concatenated_history(
    tmp_path, alike
):
    """Per-day history pieces kept by the run's CachedReader give what clean_day gives on the
    concatenated raw days; days whose columns disagree in dtype take the concatenation."""
    from pipeline.data.storage import CachedReader, PartitionStore
    from pipeline.steps import build_features_day

    spec = _spec()
    raw, features = PartitionStore(tmp_path / "raw"), PartitionStore(tmp_path / "features")
    days = [DAY - dt.timedelta(days=k) for k in range(5, -1, -1)]
    rng = np.random.default_rng(3)
    for i, d in enumerate(days):
        frame = _rows(20, d, region=rng.choice(["north", "south"], 20),
                      churned=rng.choice(["YES", "NO", None], 20))  # fmt: skip
        if not alike and i == 2:
            frame["region"] = frame["region"].astype("category")
        raw.write(d, frame)
    reader = CachedReader(raw, spec.max_lag_days)
    for d in days:
        got = build_features_day(spec, raw, features, d, reader).frame
        history, _ = raw.read_many(spec.history_days(d))
        expected = clean_day(raw.read(d), d, spec, history if len(history) else None).features
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
