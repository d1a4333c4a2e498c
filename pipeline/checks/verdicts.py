"""Checking stored days and recording each day's verdict.

:func:`check_raw_days` and :func:`check_feature_days` read a run's stored partitions (only the
columns the suites look at), validate them with one Great Expectations call
(:mod:`pipeline.checks.suites`) and write each day's :class:`~pipeline.checks.engine.DayVerdict`
to the :class:`VerdictStore`, where ``trained_model`` reads which days to leave out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.checks.results import ERROR, SAMPLE_SIZE, WARN, DayVerdict, Outcome, outcome
from pipeline.checks.shift import (
    TRAILING_LABEL_DAYS,
    Champion,
    LabelCounts,
    label_counts,
    label_values,
)
from pipeline.checks.suites import (
    MAX_QUARANTINE_FRACTION,
    ROW_COUNT_FACTOR,
    TRAILING_DAYS,
    raw_columns,
    validate_features,
    validate_raw,
)
from pipeline.data.cleaning import QUARANTINE_REASON
from pipeline.data.storage import PartitionStore, as_path, parquet_source, write_json_atomic
from pipeline.task import LABEL_COLUMN, TaskSpec


class VerdictStore:
    """The latest check verdict of each day: ``<root>/<asset>/<YYYY-MM-DD>.json``."""

    def __init__(self, root: str | Path):
        self.root = as_path(root)

    def path(self, asset: str, day: dt.date) -> Path:
        return self.root / asset / f"{day.isoformat()}.json"

    def write(self, verdict: DayVerdict, run_id: str | None = None) -> Path:
        data = {**verdict.to_dict(), "run_id": run_id,
                "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
        return write_json_atomic(self.path(verdict.asset, verdict.day), data)

    def read(self, asset: str, day: dt.date) -> dict[str, Any] | None:
        """The day's verdict as stored (with ``run_id`` and ``checked_at``), or None."""
        try:  # one request on object storage
            return json.loads(self.path(asset, day).read_text())
        except FileNotFoundError:
            return None

    def left_out(
        self, days: Iterable[dt.date], assets: Iterable[str] = ("raw_data", "cleaned_features")
    ) -> dict[str, str]:
        """The days whose latest blocking check failed, each with why."""
        out: dict[str, str] = {}
        for day in days:
            why = []
            for asset in assets:
                data = self.read(asset, day)
                if data and data["blocking_failed"]:
                    verdict = DayVerdict.from_dict(data)
                    why.append(f"{asset}: " + "; ".join(verdict.reasons(ERROR)))
            if why:
                out[day.isoformat()] = " | ".join(why)
        return out


def _unassigned_outcome(spec: TaskSpec, path: Path | None) -> Outcome | None:
    """The WARN answer about the source rows that belong to no day, kept in ``path``."""
    if path is None or not path.is_file():
        return None
    frame = pd.read_parquet(parquet_source(path))
    ts = spec.timestamp
    values = frame[ts].tolist()[:SAMPLE_SIZE] if ts in frame else []
    return outcome(
        None, rule=f"every source row has a timestamp {ts!r} that parses (else: {path.name})",
        column=ts, severity=WARN, success=frame.empty, observed_value=str(path),
        element_count=len(frame), unexpected_count=len(frame), sample_unexpected=values,
    )  # fmt: skip


def _trailing_counts(store: PartitionStore, days: list[dt.date]) -> dict[dt.date, int]:
    out = {}
    first = min(days)
    for k in range(1, TRAILING_DAYS + 1):
        day = first - dt.timedelta(days=k)
        if store.exists(day):
            out[day] = pq.ParquetFile(parquet_source(store.path(day))).metadata.num_rows
    return out


def _read_columns(path: Path, wanted: list[str]) -> pa.Table:
    """Those of the ``wanted`` columns that the file has (all of them when it has none)."""
    file = pq.ParquetFile(parquet_source(path))  # one open for the schema and the rows
    names = file.schema_arrow.names
    return file.read(columns=[c for c in wanted if c in names] or None)


def quarantine_reasons(path: Path) -> list[str]:
    """A quarantine file's reasons, one per row (all the checks need of it)."""
    if not path.is_file():
        return []
    table = _read_columns(path, [QUARANTINE_REASON])
    if QUARANTINE_REASON not in table.column_names:
        return ["(no reason recorded)"] * table.num_rows
    return table.column(QUARANTINE_REASON).to_pylist()


def check_raw_days(
    spec: TaskSpec,
    raw: PartitionStore,
    verdicts: VerdictStore,
    days: list[dt.date],
    run_id: str | None = None,
    row_count_factor: float = ROW_COUNT_FACTOR,
    unassigned: Path | None = None,
) -> list[DayVerdict]:
    """Checks the stored raw_data of ``days`` and records each day's verdict; ``unassigned``
    is the file of the source rows that belong to no day (see ``keep_unassigned``)."""
    wanted = raw_columns(spec)
    frames = {}
    for day in days:  # only the columns the suite looks at: a day's file may have many more
        frames[day] = _read_columns(raw.path(day), wanted)
    found = validate_raw(spec, frames, _trailing_counts(raw, days), row_count_factor)
    unassigned_outcome = _unassigned_outcome(spec, unassigned)
    out = []
    for day in days:
        verdict = found[day]
        if unassigned_outcome is not None:  # such a row could belong to any day of the run
            verdict.results.append(unassigned_outcome)
        verdicts.write(verdict, run_id)
        out.append(verdict)
    return out


def trailing_label_counts(
    features: PartitionStore, days: list[dt.date], back: int = TRAILING_LABEL_DAYS
) -> dict[dt.date, LabelCounts]:
    """Labelled rows and positives of the stored days in the ``back`` days before the first of
    ``days`` and between them (not ``days`` themselves): only the label column is read."""
    if not days:
        return {}
    run = set(days)
    first, last = min(days), max(days)
    out = {}
    for k in range((last - first).days + back + 1):
        day = first - dt.timedelta(days=back) + dt.timedelta(days=k)
        if day in run or day >= last or not features.exists(day):
            continue
        table = _read_columns(features.path(day), [LABEL_COLUMN])
        if LABEL_COLUMN in table.column_names:
            out[day] = label_counts(label_values(table))
    return out


def check_feature_days(
    spec: TaskSpec,
    features: PartitionStore,
    verdicts: VerdictStore,
    days: list[dt.date],
    vocabularies: Mapping[str, list[str]] | None = None,
    max_quarantine_fraction: float = MAX_QUARANTINE_FRACTION,
    run_id: str | None = None,
    champion: Champion | None = None,
) -> list[DayVerdict]:
    """Checks the stored cleaned_features of ``days`` and records each day's verdict; with the
    ``champion`` (:meth:`Champion.load`), its vocabularies, AUC and training distribution."""
    frames = {day: pq.ParquetFile(parquet_source(features.path(day))).read() for day in days}
    quarantines = {day: quarantine_reasons(features.quarantine_path(day)) for day in days}
    history = trailing_label_counts(features, days)
    found = validate_features(spec, frames, quarantines, vocabularies, max_quarantine_fraction,
                              history=history, champion=champion)  # fmt: skip
    for day in days:
        verdicts.write(found[day], run_id)
    return [found[day] for day in days]
