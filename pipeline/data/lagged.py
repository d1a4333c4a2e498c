"""Lagged rates: the share of positive labels per group over the days before a day.

Used by ``cleaned_features`` (through :func:`pipeline.data.cleaning.clean_day`), by feedback
examples (cleaned the same way), and by serving, whose tables :func:`lag_tables` computes at
training time with the very same function.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.data.labels import compute_labels
from pipeline.data.storage import PartitionStore
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
    """Share of positive labels per group over the ``rule.days`` days strictly before ``day``.

    Returns one row per group: the ``by`` columns and the rate (named ``rule.feature_name``).
    Rows of ``history`` outside that window, or with an unusable label, are not counted.
    """
    name = rule.feature_name
    if not len(history.rows if isinstance(history, LabelledHistory) else history):
        return pd.DataFrame(columns=[*rule.by, name])
    if not isinstance(history, LabelledHistory):
        history = LabelledHistory.of(history, spec)
    start = pd.Timestamp(day - dt.timedelta(days=rule.days), tz="UTC")
    end = pd.Timestamp(day, tz="UTC")
    usable = history.usable & (history.timestamps >= start) & (history.timestamps < end)
    frame = history.rows.loc[usable, list(rule.by)].astype(str)
    frame[name] = history.labels[usable].to_numpy()
    return frame.groupby(list(rule.by), as_index=False)[name].mean()


def lag_tables(spec: TaskSpec, raw: PartitionStore, as_of: dt.date) -> dict[str, Any]:
    """Every lagged rate's table as of ``as_of`` (over the raw days before it), as JSON: what
    serving looks up per request instead of recomputing the rates."""
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
