"""Cleaning one day of raw rows into typed model inputs, with the label and the lagged rates.

A row that cannot be cleaned is never dropped silently: it goes to the quarantine frame with
its reason. A problem with the whole day (a column the task needs is absent) raises instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.data.labels import compute_labels
from pipeline.data.lagged import (
    HistoryPiece,
    history_pieces,
    key_strings,
    lag_key_columns,
    lagged_rate_values,
)
from pipeline.data.timestamps import parse_timestamps
from pipeline.task import LABEL_COLUMN, TaskSpec

QUARANTINE_REASON = "quarantine_reason"


class CleaningError(ValueError):
    """A day that cannot be cleaned at all; the message names the partition and the column."""


@dataclass
class CleanResult:
    features: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def quarantine_reasons(self) -> dict[str, int]:
        if self.quarantine.empty:
            return {}
        counts = self.quarantine[QUARANTINE_REASON].value_counts()
        return {str(k): int(v) for k, v in counts.items()}


def _require_columns(frame: pd.DataFrame, spec: TaskSpec, day: dt.date, what: str) -> None:
    for col in spec.raw_columns:
        if col not in frame.columns:
            raise CleaningError(f"partition {day}: {what} has no column {col!r}")


def _numeric(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iuf":  # already numbers
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _as_strings(values: pd.Series) -> pd.Series:
    """A categorical column: its values as strings, missing values kept as they are."""
    missing = values.isna()
    if not missing.any():  # the usual case: no ``where`` needed
        return values.astype(str).astype(object)
    return values.where(missing, values.astype(str)).astype(object)


def clean_day(
    raw: pd.DataFrame,
    day: dt.date,
    spec: TaskSpec,
    history: pd.DataFrame | Sequence[HistoryPiece] | None = None,
    labelled: bool = True,
) -> CleanResult:
    """Cleans the raw rows of ``day``.

    Args:
        raw: the day's rows as the source gave them.
        day: the partition's date (UTC).
        spec: the task.
        history: raw rows of earlier days, used only for the lagged rates; any rows on or after
            ``day`` in it, or in the task's ``label_delay_days`` before it (labels not known on
            ``day``), are ignored. Or those rows as :class:`HistoryPiece` s (e.g. one per
            raw day, built once per run): the same result, without re-reading them.
        labelled: False while the day's batch labels have not matured
            (:mod:`pipeline.data.maturity`): the label column is then NaN and never a reason
            to quarantine a row.

    Returns:
        The typed features (timestamp, label, categorical, numeric, calendar and lagged-rate
        columns) and the quarantined raw rows with their reason.
    """
    if raw.empty and not len(raw.columns):
        raw = pd.DataFrame({c: pd.Series(dtype=object) for c in spec.raw_columns})
    _require_columns(raw, spec, day, "the raw data")
    raw = raw.reset_index(drop=True)
    # A row's first problem is its reason; plain arrays, as this runs for every column.
    reason = np.full(len(raw), "", dtype=object)
    clean = np.ones(len(raw), dtype=bool)

    def flag(mask: pd.Series | np.ndarray, why: str | np.ndarray) -> None:
        hit = np.asarray(mask, dtype=bool) & clean
        if not hit.any():
            return
        reason[hit] = why[hit] if isinstance(why, np.ndarray) else why
        clean[hit] = False

    ts = parse_timestamps(raw[spec.timestamp])
    flag(ts.isna(), f"timestamp: {spec.timestamp!r} does not parse")
    start = pd.Timestamp(day, tz="UTC")
    flag(
        ts.notna() & ((ts < start) | (ts >= start + pd.Timedelta(days=1))),
        f"timestamp: {spec.timestamp!r} is not on {day}",
    )
    if labelled:
        label, label_reason = compute_labels(raw, spec)
        flag(label_reason != "", label_reason.to_numpy(dtype=object))
    else:  # not known yet: kept unlabelled, whatever the source holds in the column today
        label = pd.Series(np.nan, index=raw.index, dtype="float64")

    out: dict[str, pd.Series | np.ndarray] = {spec.timestamp: ts, LABEL_COLUMN: label}
    for col in spec.categorical:
        out[col] = _as_strings(raw[col])
    for col in spec.numeric:
        given = raw[col]
        values = _numeric(given)
        array = values.to_numpy()
        if not (isinstance(given.dtype, np.dtype) and given.dtype.kind in "iuf"):
            # (a column of numbers has no value that is not one)
            flag(np.isnan(array) & given.notna().to_numpy(), f"numeric: {col!r} is not a number")
        flag(np.isinf(array), f"numeric: {col!r} is infinite")
        out[col] = values
    if spec.key and all(c in raw.columns for c in spec.key):
        # A second row with the same key is a duplicate: kept in quarantine, never trained on.
        flag(raw.duplicated(list(spec.key), keep="first"), f"duplicate: key {list(spec.key)}")
    has_nat = bool(ts.isna().any())
    for name, feature in zip(spec.calendar, spec.calendar_features, strict=True):
        part = getattr(ts.dt, {"hour": "hour", "day_of_week": "dayofweek", "month": "month"}[name])
        if has_nat:
            part = part.astype("Int64").astype(str).where(ts.notna(), None)
            out[feature] = part.astype(object)
        else:  # the usual case: whole numbers, no missing value
            out[feature] = part.astype(str).astype(object)

    if spec.lagged_rates:
        if history is None or isinstance(history, pd.DataFrame):
            hist = history if history is not None else raw.iloc[0:0]
            if not hist.empty:
                _require_columns(hist, spec, day, "the history for lagged rates")
            pieces = history_pieces(hist, spec)
        else:
            pieces = list(history)
        keys = {c: key_strings(raw[c]) for c in lag_key_columns(spec)}
        for rule in spec.lagged_rates:
            by = [keys[c] for c in rule.by]
            out[rule.feature_name] = lagged_rate_values(
                day, pieces, rule, by, spec.label_delay_days
            )

    bad = ~clean
    quarantine = raw.loc[bad].copy()
    quarantine[QUARANTINE_REASON] = reason[bad]
    features = pd.DataFrame(out, index=raw.index)
    if bad.any():
        features = features.loc[clean].reset_index(drop=True)
    if labelled:  # an unlabelled day keeps its NaN labels as float64
        features[LABEL_COLUMN] = features[LABEL_COLUMN].astype("int8")
    return CleanResult(features=features, quarantine=quarantine.reset_index(drop=True))
