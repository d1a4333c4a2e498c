"""Lagged rates: the share of positive labels per group over the days before a day.

Only labels that have matured by the day are counted: under a task's ``label_delay_days`` the
window of day D is the ``days`` days ending ``label_delay_days`` before D, so that a row's rates
are the same whether its day is cleaned then or later, and serving (whose tables are computed as
of a day with the same window) sees what training saw. Without a delay: the days right before D.

Used by ``cleaned_features`` (through :func:`pipeline.data.cleaning.clean_day`), by feedback
examples (cleaned the same way), and by serving, whose tables :func:`lag_tables` computes at
training time with the very same function.

:func:`lagged_rates` is the reference: one table per rule. ``clean_day`` looks the rates of its
rows up with :func:`lagged_rate_values` instead, which gives the same numbers from
:class:`HistoryPiece` arrays (one per raw day, computed once per run by the caller when it can)
with one ``factorize`` and two ``bincount`` per rule, and no per-row Python work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.labels import compute_labels
from pipeline.data.storage import CachedReader, PartitionStore
from pipeline.data.timestamps import parse_timestamps
from pipeline.task import LaggedRate, TaskSpec


@dataclass
class LabelledHistory:
    """Raw rows of earlier days with their parsed timestamps and usable labels, computed once
    per day and shared by every lagged-rate rule."""

    rows: pd.DataFrame
    timestamps: pd.Series
    labels: pd.Series
    usable: pd.Series

    @classmethod
    def of(cls, history: pd.DataFrame, spec: TaskSpec) -> LabelledHistory:
        label, reason = compute_labels(history, spec)
        ts = parse_timestamps(history[spec.timestamp])
        return cls(history, ts, label, reason == "")


def lagged_rates(
    day: dt.date,
    history: pd.DataFrame | LabelledHistory,
    spec: TaskSpec,
    rule: LaggedRate,
) -> pd.DataFrame:
    """Share of positive labels per group over the ``rule.days`` days ending
    ``spec.label_delay_days`` before ``day`` (with no delay: the days strictly before it).

    Returns one row per group: the ``by`` columns and the rate (named ``rule.feature_name``).
    Rows of ``history`` outside that window, or with an unusable label, are not counted.
    """
    name = rule.feature_name
    if not len(history.rows if isinstance(history, LabelledHistory) else history):
        return pd.DataFrame(columns=[*rule.by, name])
    if not isinstance(history, LabelledHistory):
        history = LabelledHistory.of(history, spec)
    start, end = _window(day, rule, spec.label_delay_days)
    usable = history.usable & (history.timestamps >= start) & (history.timestamps < end)
    frame = history.rows.loc[usable, list(rule.by)].astype(str)
    frame[name] = history.labels[usable].to_numpy()
    return frame.groupby(list(rule.by), as_index=False)[name].mean()


def _window(day: dt.date, rule: LaggedRate, delay_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end)`` of the rates of ``day``: ``rule.days`` days whose labels have matured by
    ``day`` (the last one ends ``delay_days`` before it)."""
    end = day - dt.timedelta(days=delay_days)
    start = end - dt.timedelta(days=rule.days)
    return pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")


def lag_key_columns(spec: TaskSpec) -> tuple[str, ...]:
    """The columns that some lagged-rate rule groups by."""
    return tuple(dict.fromkeys(c for rule in spec.lagged_rates for c in rule.by))


def key_strings(values: pd.Series) -> np.ndarray:
    """A group column as :func:`lagged_rates` groups it (``astype(str)``; missing stays
    missing), as a plain array."""
    return values.astype(str).to_numpy(dtype=object)


@dataclass
class HistoryPiece:
    """Raw rows (typically one raw day) reduced to what the lagged rates count: only the rows
    with a usable label and a timestamp, their timestamps, labels and group keys as strings.

    Built once per raw day (see ``CachedReader.memo``), it serves the lagged rates of every
    later day whose window covers it, without re-parsing or re-labelling its rows.
    """

    timestamps: pd.Series  # of the kept rows
    labels: np.ndarray  # float64, 0 or 1
    keys: dict[str, np.ndarray]  # lag key column -> key strings of the kept rows
    first: pd.Timestamp | None  # the kept rows' earliest and latest timestamp
    last: pd.Timestamp | None
    # rule.by -> the piece's (group keys, label sums, counts), for windows that hold it whole
    totals: dict[tuple[str, ...], tuple[list[np.ndarray], np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def of(cls, frame: pd.DataFrame, spec: TaskSpec) -> HistoryPiece:
        label, reason = compute_labels(frame, spec)
        ts = parse_timestamps(frame[spec.timestamp])
        keep = (reason == "").to_numpy(dtype=bool) & ts.notna().to_numpy(dtype=bool)
        ts = ts[keep].reset_index(drop=True)
        keys = {c: key_strings(frame[c])[keep] for c in lag_key_columns(spec)}
        labels = label.to_numpy(dtype="float64")[keep]
        first, last = (ts.min(), ts.max()) if len(ts) else (None, None)
        return cls(ts, labels, keys, first, last)

    def group_totals(self, by: tuple[str, ...]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The kept rows summed per group of the ``by`` columns: one key array per column (a
        row per group), the groups' label sums and row counts. Computed once per rule; a
        window that holds the whole piece adds these few rows instead of every row of it."""
        if by not in self.totals:
            self.totals[by] = _totals([self.keys[c] for c in by], self.labels)
        return self.totals[by]

    def in_window(self, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray | slice | None:
        """Which kept rows fall in ``[start, end)``: all (a slice), none (None), or a mask."""
        if self.first is None or self.last < start or self.first >= end:
            return None
        if self.first >= start and self.last < end:
            return slice(None)
        mask = ((self.timestamps >= start) & (self.timestamps < end)).to_numpy(dtype=bool)
        return mask if mask.any() else None


def history_pieces(history: pd.DataFrame, spec: TaskSpec) -> list[HistoryPiece]:
    """``history`` (raw rows of earlier days) as pieces for :func:`lagged_rate_values`."""
    return [HistoryPiece.of(history, spec)] if len(history) else []


def _layout(frame: pd.DataFrame, spec: TaskSpec) -> tuple[object, ...] | None:
    """The dtypes of the columns that the lagged rates read, or None if the frame lacks one of
    the task's raw columns."""
    if any(c not in frame.columns for c in spec.raw_columns):
        return None
    return tuple(
        frame[c].dtype for c in (spec.timestamp, spec.label.column, *lag_key_columns(spec))
    )


def history_of(
    spec: TaskSpec, reader: CachedReader, found: list[tuple[dt.date, pd.DataFrame]]
) -> pd.DataFrame | list[HistoryPiece]:
    """The lagged rates' history of a day, from the earlier raw days ``found`` (day, frame).

    Days with the task's columns, of one dtype each, can be used one by one with the same result
    as their concatenation: then each day's labels and keys are computed once per run (kept by
    the ``reader`` beside the day). Days that disagree on a column come back as one frame, as
    ``pd.concat`` makes it.
    """
    found = [(d, f) for d, f in found if len(f)]
    layouts = {
        reader.memo(d, f"layout for {spec.name}", lambda f: _layout(f, spec)) for d, _ in found
    }
    if None not in layouts and len(layouts) <= 1:
        name = f"lagged history of {spec.name}"
        return [reader.memo(d, name, lambda f: HistoryPiece.of(f, spec)) for d, _ in found]
    return pd.concat([f for _, f in found], ignore_index=True) if found else pd.DataFrame()


def _group_codes(columns: Sequence[np.ndarray]) -> np.ndarray:
    """One code per row for the combination of its values in ``columns``; -1 where any value is
    missing (such a row is in no group, as with ``groupby``)."""
    codes, _ = pd.factorize(columns[0])
    for col in columns[1:]:
        more, uniques = pd.factorize(col)
        combined = np.where((codes < 0) | (more < 0), -1, codes * len(uniques) + more)
        codes, _ = pd.factorize(combined)
        codes[combined < 0] = -1
    return codes


def _totals(
    columns: Sequence[np.ndarray], labels: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Label sums and row counts per group of ``columns`` (rows with a missing key in none),
    with each group's key values: one row per group."""
    codes = _group_codes(columns)
    counted = codes >= 0
    groups, first = np.unique(codes[counted], return_index=True)
    rows = np.flatnonzero(counted)[first]  # one row of each group, for its keys
    size = int(groups.max()) + 1 if len(groups) else 0
    sums = np.bincount(codes[counted], weights=labels[counted], minlength=size)[groups]
    counts = np.bincount(codes[counted], minlength=size)[groups]
    return [col[rows] for col in columns], sums, counts


def lagged_rate_values(
    day: dt.date,
    pieces: Sequence[HistoryPiece],
    rule: LaggedRate,
    keys: Sequence[np.ndarray],
    delay_days: int,
) -> np.ndarray:
    """The rate of :func:`lagged_rates` for each row whose group is given by ``keys`` (one key
    string array per ``rule.by`` column, see :func:`key_strings`); NaN for a group without
    history. The same numbers: every label is 0 or 1, so the sums are exact. ``delay_days`` is
    the task's ``label_delay_days``.

    A piece the window holds whole adds its per-group totals (:meth:`HistoryPiece.group_totals`,
    a few hundred rows for a day of flights); one that the window cuts adds its rows in the
    window, summed the same way. Then one factorize over those groups and the day's keys."""
    n = len(keys[0])
    start, end = _window(day, rule, delay_days)
    by = tuple(rule.by)
    parts: list[tuple[list[np.ndarray], np.ndarray, np.ndarray]] = []
    for piece in pieces:
        sel = piece.in_window(start, end)
        if sel is None:
            continue
        if isinstance(sel, slice):
            parts.append(piece.group_totals(by))
        else:
            parts.append(_totals([piece.keys[c][sel] for c in by], piece.labels[sel]))
    out = np.full(n, np.nan)
    if not parts or not n:
        return out
    sums = np.concatenate([p[1] for p in parts])
    counts = np.concatenate([p[2] for p in parts])
    m = len(sums)
    columns = [np.concatenate([*(p[0][j] for p in parts), k]) for j, k in enumerate(keys)]
    codes = _group_codes(columns)
    hist, today = codes[:m], codes[m:]
    size = int(codes.max()) + 1 if len(codes) else 0
    group_sums = np.bincount(hist, weights=sums, minlength=size)  # no missing key in hist
    group_counts = np.bincount(hist, weights=counts, minlength=size)
    found = today >= 0
    found[found] = group_counts[today[found]] > 0
    out[found] = group_sums[today[found]] / group_counts[today[found]]
    return out


def lag_tables(spec: TaskSpec, raw: PartitionStore, as_of: dt.date) -> dict[str, Any]:
    """Every lagged rate's table as of ``as_of`` (over the raw days whose labels have matured by
    then, the window of a row of day ``as_of``), as JSON: what serving looks up per request
    instead of recomputing the rates."""
    history, missing = raw.read_many(spec.history_days(as_of))
    labelled = LabelledHistory.of(history, spec) if len(history) else history
    tables = []
    for rule in spec.lagged_rates:
        rates = lagged_rates(as_of, labelled, spec, rule)
        tables.append(
            {
                "feature": rule.feature_name,
                "by": list(rule.by),
                "days": rule.days,
                "rows": [[*map(str, r[:-1]), float(r[-1])] for r in rates.itertuples(False)],
            }
        )
    return {
        "lagged_rates_as_of": as_of.isoformat(),
        "history_days_missing": [d.isoformat() for d in missing],
        "lagged_rates": tables,
    }
