"""Timestamps: every parse goes through one place, all in UTC."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from pipeline.data.timestamps import parse_timestamp, parse_timestamp_array, parse_timestamps

UTC = dt.UTC


def test_strings_naive_are_utc_offsets_converted_garbage_is_nat():
    values = pd.Series(
        ["2025-03-01T10:00:00", "2025-03-01T10:00:00+02:00", "2025-03-01T23:30:00Z", "soon", None]
    )
    parsed = parse_timestamps(values)
    assert isinstance(parsed.dtype, pd.DatetimeTZDtype) and str(parsed.dtype.tz) == "UTC"
    assert parsed.tolist()[:3] == [
        pd.Timestamp("2025-03-01 10:00", tz="UTC"),
        pd.Timestamp("2025-03-01 08:00", tz="UTC"),
        pd.Timestamp("2025-03-01 23:30", tz="UTC"),
    ]
    assert parsed.isna().tolist() == [False, False, False, True, True]


def test_a_date_only_string_is_midnight_utc():
    parsed = parse_timestamps(pd.Series(["2025-03-01"]))
    assert parsed.iloc[0] == pd.Timestamp("2025-03-01", tz="UTC")


def test_aware_timestamps_are_converted_to_utc():
    values = pd.Series(pd.to_datetime(["2025-03-01 01:00"]).tz_localize("Europe/Paris"))
    parsed = parse_timestamps(values)
    assert str(parsed.dt.tz) == "UTC"
    assert parsed.iloc[0] == pd.Timestamp("2025-03-01 00:00", tz="UTC")


def test_naive_datetimes_are_taken_as_utc():
    parsed = parse_timestamps(pd.Series(pd.to_datetime(["2025-03-01 05:00", None])))
    assert parsed.iloc[0] == pd.Timestamp("2025-03-01 05:00", tz="UTC")
    assert pd.isna(parsed.iloc[1])


def test_the_index_is_kept():
    parsed = parse_timestamps(pd.Series(["2025-03-01T00:00:00Z", "x"], index=[7, 9]))
    assert list(parsed.index) == [7, 9]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T10:00:00", dt.datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("2025-03-01T10:00:00+02:00", dt.datetime(2025, 3, 1, 8, tzinfo=UTC)),
        ("2025-03-01T10:00:00Z", dt.datetime(2025, 3, 1, 10, tzinfo=UTC)),
        ("2025-03-01", dt.datetime(2025, 3, 1, tzinfo=UTC)),
        (dt.datetime(2025, 3, 1, 10), dt.datetime(2025, 3, 1, 10, tzinfo=UTC)),
        (
            dt.datetime(2025, 3, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            dt.datetime(2025, 3, 1, 15, tzinfo=UTC),
        ),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1740823200, None),  # a number is not an ISO-8601 string
        (dt.date(2025, 3, 1), None),
        ("0001-01-01T00:00+01:00", None),  # before year 1 once in UTC
        ("9999-12-31T23:00-14:00", None),  # after year 9999 once in UTC
    ],
)
def test_parse_timestamp(value, expected):
    parsed = parse_timestamp(value)
    assert parsed == expected
    if expected is not None:
        assert parsed.tzinfo == UTC


def test_parse_timestamp_array_nulls_what_does_not_parse():
    values = pa.chunked_array(
        [["2025-03-01T10:00:00+01:00", None], ["nonsense", "2025-03-02T00:00:00"]]
    )
    parsed = parse_timestamp_array(values)
    assert parsed.type == pa.timestamp("us", tz="UTC")
    assert parsed.null_count == 2
    assert parsed.to_pylist() == [
        dt.datetime(2025, 3, 1, 9, tzinfo=UTC),
        None,
        None,
        dt.datetime(2025, 3, 2, tzinfo=UTC),
    ]


def test_parse_timestamp_array_of_a_plain_array():
    parsed = parse_timestamp_array(pa.array([None, "2025-03-01T00:00:00Z"]))
    assert parsed.is_null().to_pylist() == [True, False]
