"""Lagged rates: the share of positive labels per group over the days before a day."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipeline.data.cleaning import clean_day
from pipeline.data.lagged import LabelledHistory, lag_tables, lagged_rates
from pipeline.data.storage import PartitionStore
from pipeline.task import LaggedRate, parse_task

DAY = dt.date(2025, 3, 5)


@pytest.fixture
def spec():
    return parse_task(
        {
            "name": "t",
            "source": {"kind": "files", "path": "data"},
            "timestamp": "ts",
            "label": {"column": "y", "positive_values": ["YES"]},
            "features": {
                "categorical": ["region", "plan"],
                "lagged_rates": [
                    {"by": ["region"], "days": 2},
                    {"by": ["region", "plan"], "days": 3},
                ],
            },
            "checks": {"y": {"allowed": ["YES", "NO"]}},
        }
    )


def _rows(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ts", "region", "plan", "y"])


HISTORY = _rows(
    ("2025-03-02T10:00:00Z", "north", "basic", "YES"),  # 3 days before: only the 3-day rule
    ("2025-03-03T00:00:00Z", "north", "basic", "YES"),
    ("2025-03-03T23:59:59Z", "north", "pro", "NO"),
    ("2025-03-04T12:00:00+02:00", "south", "basic", "YES"),  # 10:00 UTC on 03-04
    ("2025-03-04T08:00:00Z", "north", "basic", "YES"),
    ("2025-03-04T09:00:00Z", "south", "pro", None),  # no usable label
    ("2025-03-04T09:30:00Z", "south", "pro", "MAYBE"),  # not an allowed value
    ("2025-03-05T00:00:00Z", "south", "pro", "NO"),  # on the day itself
    ("not a time", "south", "pro", "NO"),
)


def test_rates_count_only_the_days_before_and_usable_labels(spec):
    rule = spec.lagged_rates[0]
    rates = lagged_rates(DAY, HISTORY, spec, rule)
    assert list(rates.columns) == ["region", "rate_region_2d"]
    assert rates.to_dict("records") == [
        {"region": "north", "rate_region_2d": pytest.approx(2 / 3)},
        {"region": "south", "rate_region_2d": 1.0},
    ]


def test_a_longer_window_and_two_group_columns(spec):
    rule = spec.lagged_rates[1]
    rates = lagged_rates(DAY, HISTORY, spec, rule)
    assert rates.to_dict("records") == [
        {"region": "north", "plan": "basic", "rate_region_plan_3d": 1.0},
        {"region": "north", "plan": "pro", "rate_region_plan_3d": 0.0},
        {"region": "south", "plan": "basic", "rate_region_plan_3d": 1.0},
    ]


def test_a_labelled_history_gives_the_same_rates(spec):
    labelled = LabelledHistory.of(HISTORY, spec)
    assert labelled.usable.tolist() == [True] * 5 + [False, False, True, True]
    for rule in spec.lagged_rates:
        expected = lagged_rates(DAY, HISTORY, spec, rule)
        pd.testing.assert_frame_equal(lagged_rates(DAY, labelled, spec, rule), expected)


def test_no_history_gives_an_empty_table_with_the_columns(spec):
    rates = lagged_rates(DAY, HISTORY.iloc[0:0], spec, LaggedRate(by=("region",), days=2))
    assert rates.empty
    assert list(rates.columns) == ["region", "rate_region_2d"]


def test_groups_are_compared_as_text(spec):
    history = _rows(("2025-03-04T01:00:00Z", 7, "basic", "YES"))
    rates = lagged_rates(DAY, history, spec, spec.lagged_rates[0])
    assert rates.to_dict("records") == [{"region": "7", "rate_region_2d": 1.0}]


def _store(tmp_path) -> PartitionStore:
    raw = PartitionStore(tmp_path / "raw_data")
    day_of = pd.to_datetime(HISTORY["ts"], utc=True, errors="coerce", format="ISO8601").dt.date
    for day in (dt.date(2025, 3, 3), dt.date(2025, 3, 4)):  # 03-02 is not materialized
        raw.write(day, HISTORY[day_of == day].reset_index(drop=True))
    return raw


def test_lag_tables_equal_lagged_rates_and_report_missing_history(spec, tmp_path):
    raw = _store(tmp_path)
    doc = lag_tables(spec, raw, DAY)
    assert doc["lagged_rates_as_of"] == "2025-03-05"
    assert doc["history_days_missing"] == ["2025-03-02"]
    history, _ = raw.read_many(spec.history_days(DAY))
    for table, rule in zip(doc["lagged_rates"], spec.lagged_rates, strict=True):
        rates = lagged_rates(DAY, history, spec, rule)
        assert table["feature"] == rule.feature_name
        assert table["by"] == list(rule.by) and table["days"] == rule.days
        assert table["rows"] == [[*map(str, r[:-1]), float(r[-1])] for r in rates.itertuples(False)]
    by_region, by_pair = doc["lagged_rates"]
    assert by_region["rows"] == [["north", pytest.approx(2 / 3)], ["south", 1.0]]
    # 03-02 is missing from the store, so north/basic is 2 of 2 and the rows are those of 03-03..04
    assert by_pair["rows"] == [
        ["north", "basic", 1.0],
        ["north", "pro", 0.0],
        ["south", "basic", 1.0],
    ]


def test_lag_tables_with_no_history_at_all(spec, tmp_path):
    doc = lag_tables(spec, PartitionStore(tmp_path / "none"), DAY)
    assert doc["history_days_missing"] == ["2025-03-02", "2025-03-03", "2025-03-04"]
    assert [t["rows"] for t in doc["lagged_rates"]] == [[], []]
    assert [t["feature"] for t in doc["lagged_rates"]] == ["rate_region_2d", "rate_region_plan_3d"]


def _delayed(spec, delay: int):
    return parse_task({**spec.to_mapping(), "label_delay_days": delay})


@pytest.mark.parametrize("delay", [1, 3, 30])
def test_a_rate_counts_only_labels_that_have_matured_by_its_day(spec, tmp_path, delay):
    """Under a label delay the window of day D is the ``days`` days ending ``delay`` days before
    D: labels of the last ``delay`` days before D are not known on D, so they cannot move D's
    rates, in training (clean_day) or in serving (lag_tables)."""
    spec = _delayed(spec, delay)
    start = DAY - dt.timedelta(days=delay + 3)
    days = [start + dt.timedelta(days=k) for k in range((DAY - start).days)]  # up to DAY - 1
    unknown = {d for d in days if d >= DAY - dt.timedelta(days=delay)}

    def history(flip: bool) -> pd.DataFrame:
        rows = []
        for d in days:
            y = "NO" if (flip and d in unknown) else "YES"
            rows += [
                (f"{d}T10:00:00Z", "north", "basic", y),
                (f"{d}T11:00:00Z", "north", "pro", "NO"),
            ]
        return _rows(*rows)

    today = _rows((f"{DAY}T12:00:00Z", "north", "basic", "YES"))
    values = []
    for flip in (False, True):
        raw = PartitionStore(tmp_path / f"raw-{flip}")
        frame = history(flip)
        for d in days:
            raw.write(d, frame[frame["ts"].str.startswith(str(d))].reset_index(drop=True))
        hist, missing = raw.read_many(spec.history_days(DAY))
        assert not missing
        cleaned = clean_day(today, DAY, spec, hist).features
        tables = lag_tables(spec, raw, DAY)["lagged_rates"]
        values.append((cleaned[["rate_region_2d", "rate_region_plan_3d"]].to_numpy().tolist(),
                       tables))  # fmt: skip
    assert values[0] == values[1]
    # the window is the 2 (3) days ending `delay` days before DAY: all matured, all "YES" / "NO"
    assert values[0][0] == [[0.5, 1.0]]


def test_without_a_delay_the_window_is_the_days_right_before(spec):
    assert spec.label_delay_days == 0
    assert spec.history_days(DAY) == [DAY - dt.timedelta(days=k) for k in (3, 2, 1)]
    assert _delayed(spec, 30).history_days(DAY) == [
        DAY - dt.timedelta(days=k) for k in (33, 32, 31)
    ]


def test_pieces_the_window_holds_whole_add_their_group_totals_with_the_same_result(spec):
    """One piece per day, each inside its day: the window holds most of them whole and adds
    their per-group totals; the rates are those of the row-level reference all the same."""
    import numpy as np

    from pipeline.data.lagged import HistoryPiece, key_strings, lagged_rate_values

    rng = np.random.default_rng(3)
    frames = []
    for back in range(1, 6):
        start = pd.Timestamp(DAY - dt.timedelta(days=back), tz="UTC")
        n = 200
        frames.append(pd.DataFrame({
            "ts": [(start + pd.Timedelta(minutes=int(m))).isoformat()
                   for m in rng.integers(0, 1440, n)],
            "region": rng.choice(["north", "south", "east", None], n),
            "plan": rng.choice(["basic", "pro"], n),
            "y": rng.choice(["YES", "NO", None], n),
        }))  # fmt: skip
    pieces = [HistoryPiece.of(f, spec) for f in frames]
    history = pd.concat(frames, ignore_index=True)
    today = _rows(*[("2025-03-05T01:00:00Z", r, p, "NO") for r in ("north", "south", "west", None)
                    for p in ("basic", "pro", "gold")])  # fmt: skip
    for rule in spec.lagged_rates:
        got = lagged_rate_values(DAY, pieces, rule, [key_strings(today[c]) for c in rule.by], 0)
        reference = lagged_rates(DAY, history, spec, rule).set_index(list(rule.by))
        index = today[list(rule.by)].astype(str)
        index = index.iloc[:, 0] if len(rule.by) == 1 else pd.MultiIndex.from_frame(index)
        want = reference[rule.feature_name].reindex(index).to_numpy()
        assert np.array_equal(got, want, equal_nan=True), rule
        assert not np.isnan(got).all()
    used = [p for p in pieces if p.totals]
    assert len(used) >= 2  # the days inside both windows were added as totals
