"""Timestamps: every parse of a timestamp in Flywheel goes through here (all in UTC)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pyarrow as pa


def parse_timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps; values that do not parse become NaT. Naive values are taken as UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def parse_timestamp_array(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """As :func:`parse_timestamps`, for an Arrow column: UTC timestamps, null where a value
    does not parse."""
    return pa.array(parse_timestamps(values.to_pandas()), type=pa.timestamp("us", tz="UTC"))


def parse_timestamp(value: Any) -> dt.datetime | None:
    """One ISO-8601 string (or datetime) as a UTC datetime (naive values are UTC), or None if it
    is not one, or if it is not a time in years 1 to 9999 once in UTC (``0001-01-01T00:00+01:00``
    is). The per-record path of serving: no pandas."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # outside datetime's years once in UTC
        return None
