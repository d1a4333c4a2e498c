"""Daily partitions as Parquet files: one file per day, replaced whole and atomically.

Paths here are a plain :class:`pathlib.Path` on local disk or a universal-pathlib ``UPath`` on
object storage (:func:`pipeline.home.home_path` chooses); the functions below are the only
places that tell them apart.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def is_local(path: Any) -> bool:
    """Whether ``path`` is on local disk (a plain ``pathlib`` path), not on object storage."""
    return isinstance(path, PurePath)


def as_path(root: str | Path) -> Path:
    """``root`` in the path type of :func:`pipeline.home.home_path`: a string may be a URL."""
    from pipeline.home import home_path  # the layout module imports the stores

    return home_path(root)


def parquet_source(path: Path) -> Path | io.BytesIO:
    """What pandas and pyarrow read a Parquet file from: the path itself on local disk, else
    its bytes, fetched in one request (pyarrow cannot open a ``UPath``)."""
    return path if is_local(path) else io.BytesIO(path.read_bytes())


def read_parquet(path: Path, **options: Any) -> pd.DataFrame:
    """``pd.read_parquet`` of a local or an object-storage path."""
    return pd.read_parquet(parquet_source(path), **options)


def replace_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Writes ``path`` whole or not at all: ``write`` fills a temporary file beside it, then one
    rename replaces ``path``. The one atomic write of Flywheel's files (partitions, verdicts,
    model documents, the champion pointer, asset values).

    On object storage, where there is no rename, ``write`` fills a local temporary file and its
    bytes go up in one request: an object appears whole or not at all.
    """
    if not is_local(path):
        with tempfile.TemporaryDirectory(prefix="flywheel-") as folder:
            tmp = Path(folder) / path.name
            write(tmp)
            path.fs.pipe_file(path.path, tmp.read_bytes())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def upload_folder(folder: Path, dest: Path, last: str) -> None:
    """Puts every file of the local ``folder`` under ``dest`` on object storage, one request
    each, the file named ``last`` after all the others (a reader that finds it finds them)."""
    names = sorted(p.name for p in folder.iterdir() if p.name != last)
    for name in [*names, last]:
        target = dest / name
        target.fs.pipe_file(target.path, (folder / name).read_bytes())


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Writes ``frame`` to ``path`` as Parquet, atomically."""
    data = _empty_parquet_bytes(frame)
    if data is not None:  # e.g. a day's quarantine file, empty on most days
        return replace_atomically(path, lambda tmp: tmp.write_bytes(data))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return replace_atomically(path, lambda tmp: pq.write_table(table, tmp))


# The Parquet file of a frame without rows depends only on its columns and their dtypes: made
# once per layout (``Table.from_pandas`` costs a millisecond even without rows), then reused.
_EMPTY_FILES: dict[tuple[object, ...], bytes] = {}
_SIMPLE_DTYPES = (np.dtype, pd.DatetimeTZDtype, pd.StringDtype)


def _empty_parquet_bytes(frame: pd.DataFrame) -> bytes | None:
    """The bytes ``pq.write_table`` writes for ``frame`` if it has no rows and only plain
    columns (string names, numpy, tz-aware or string dtypes); else None."""
    if len(frame) or frame.attrs or type(frame.index) is not pd.RangeIndex:
        return None
    columns = frame.columns
    if type(columns) is not pd.Index or columns.name is not None or not columns.is_unique:
        return None
    if not all(type(c) is str for c in columns):
        return None
    dtypes = tuple(frame.dtypes)
    if not all(isinstance(d, _SIMPLE_DTYPES) for d in dtypes):
        return None
    key = (str(columns.dtype), tuple(columns), tuple(repr(d) for d in dtypes))
    data = _EMPTY_FILES.get(key)
    if data is None:
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
        data = _EMPTY_FILES[key] = buffer.getvalue().to_pybytes()
    return data


def write_json_atomic(path: Path, data: Any, **dumps: Any) -> Path:
    """Writes ``data`` to ``path`` as JSON (``dumps``: options of ``json.dumps``), atomically."""
    text = json.dumps(data, **dumps)
    return replace_atomically(path, lambda tmp: tmp.write_text(text))


class PartitionStore:
    """``<root>/<YYYY-MM-DD>.parquet`` per day, with an optional quarantine file beside it."""

    def __init__(self, root: str | Path):
        self.root = as_path(root)

    def path(self, day: dt.date) -> Path:
        return self.root / f"{day.isoformat()}.parquet"

    def quarantine_path(self, day: dt.date) -> Path:
        return self.root / f"{day.isoformat()}.quarantine.parquet"

    def exists(self, day: dt.date) -> bool:
        return self.path(day).is_file()

    def write(self, day: dt.date, frame: pd.DataFrame, quarantine: pd.DataFrame | None = None):
        """Replaces the day's file (and its quarantine file, written even when empty)."""
        write_parquet_atomic(frame, self.path(day))
        if quarantine is not None:
            write_parquet_atomic(quarantine, self.quarantine_path(day))

    def read(self, day: dt.date) -> pd.DataFrame:
        path = self.path(day)
        try:  # one request on object storage, not a look-up and then a read
            return read_parquet(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"partition {day} has not been materialized ({path})") from err

    def days(self) -> list[dt.date]:
        """Days that have a file, oldest first."""
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.glob("*.parquet"):
            stem = p.name.removesuffix(".parquet")
            try:
                out.append(dt.date.fromisoformat(stem))
            except ValueError:
                continue  # quarantine files and anything else
        return sorted(out)

    def read_many(self, days: Iterable[dt.date]) -> tuple[pd.DataFrame, list[dt.date]]:
        """The rows of every day that exists, and the days that do not."""
        return _read_existing(self, days, self.read)


class CachedReader:
    """Reads a store's partitions at most once per run.

    ``cleaned_features`` of day D reads raw day D and the days before it, and day D+1 reads
    most of them again; in a run over a range of days this keeps what the next days will
    need and forgets days older than ``keep_days`` before the newest day read. Frames handed
    out are shared: callers must not modify them.
    """

    def __init__(self, store: PartitionStore, keep_days: int):
        self.store = store
        self.keep_days = keep_days
        self._frames: dict[dt.date, pd.DataFrame] = {}
        self._memos: dict[tuple[dt.date, str], Any] = {}

    def read(self, day: dt.date) -> pd.DataFrame:
        frame = self._frames.get(day)
        if frame is None:
            frame = self._frames[day] = self.store.read(day)
            oldest = max(self._frames) - dt.timedelta(days=self.keep_days)
            for old in [d for d in self._frames if d < oldest]:
                del self._frames[old]
            for key in [k for k in self._memos if k[0] not in self._frames]:
                del self._memos[key]
        return frame

    def memo(self, day: dt.date, name: str, make: Callable[[pd.DataFrame], Any]) -> Any:
        """``make(self.read(day))``, computed once per day and ``name`` and forgotten with the
        day's frame: what callers derive from a day that the next days will need again."""
        frame = self.read(day)
        key = (day, name)
        if key not in self._memos:
            self._memos[key] = make(frame)
        return self._memos[key]

    def read_many(self, days: Iterable[dt.date]) -> tuple[pd.DataFrame, list[dt.date]]:
        """As :meth:`PartitionStore.read_many`, through the cache."""
        return _read_existing(self.store, days, self.read)

    def read_each(
        self, days: Iterable[dt.date]
    ) -> tuple[list[tuple[dt.date, pd.DataFrame]], list[dt.date]]:
        """As :meth:`read_many`, without concatenating: each existing day with its frame (empty
        ones included), and the days that do not exist."""
        found, missing = [], []
        for day in days:
            if self.store.exists(day):
                found.append((day, self.read(day)))
            else:
                missing.append(day)
        return found, missing


def _read_existing(
    store: PartitionStore, days: Iterable[dt.date], read: Callable[[dt.date], pd.DataFrame]
) -> tuple[pd.DataFrame, list[dt.date]]:
    """The rows of every day of ``store`` that exists (read with ``read``), and the others."""
    frames, missing = [], []
    for day in days:
        if store.exists(day):
            frames.append(read(day))
        else:
            missing.append(day)
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, missing
