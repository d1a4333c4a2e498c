"""What a check finds: each expectation's :class:`Outcome`, and each day's :class:`DayVerdict`."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.checks.engine import Rule

ERROR, WARN = "ERROR", "WARN"
SAMPLE_SIZE = 20


@dataclass
class Outcome:
    """One expectation's answer for one day."""

    rule: str
    expectation: str  # the GX expectation type, or "computed by flywheel"
    column: str | None
    severity: str
    success: bool
    observed_value: Any = None
    element_count: int = 0
    unexpected_count: int | None = None  # None: not a count of rows (a table-level answer)
    sample_unexpected: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict: its deep copy cost a second per year of verdicts
        # (27k outcomes); the values are plain already (see :func:`plain`).
        return {
            "rule": self.rule,
            "expectation": self.expectation,
            "column": self.column,
            "severity": self.severity,
            "success": self.success,
            "observed_value": self.observed_value,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "sample_unexpected": list(self.sample_unexpected),
        }


@dataclass
class DayVerdict:
    """Every expectation's answer for one day of one asset."""

    asset: str
    day: dt.date
    rows: int
    results: list[Outcome]
    # numbers for plots over partitions (cleaned_features: label_rate, max_psi); None: undefined
    metrics: dict[str, float | None] = field(default_factory=dict)

    def failures(self, severity: str | None = None) -> list[Outcome]:
        return [
            r
            for r in self.results
            if not r.success and (severity is None or r.severity == severity)
        ]

    def passed(self, severity: str) -> bool:
        return not self.failures(severity)

    @property
    def blocking_failed(self) -> bool:
        return not self.passed(ERROR)

    @property
    def worst_failed(self) -> str | None:
        """The worst severity that failed: ERROR, WARN, or None when every expectation passed."""
        failed = {r.severity for r in self.failures()}
        return ERROR if ERROR in failed else (WARN if failed else None)

    def reasons(self, severity: str | None = None) -> list[str]:
        """One line per failed expectation: the rule, the column and the count."""
        out = []
        for r in self.failures(severity):
            count = r.unexpected_count
            what = f"{count} of {r.element_count} rows" if count is not None else "failed"
            out.append(f"{r.rule}: {what} (observed {r.observed_value})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "day": self.day.isoformat(),
            "rows": self.rows,
            "blocking_failed": self.blocking_failed,
            "results": [r.to_dict() for r in self.results],
            "metrics": plain(self.metrics),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DayVerdict:
        results = [Outcome(**r) for r in data["results"]]
        day = dt.date.fromisoformat(data["day"])
        return cls(data["asset"], day, data["rows"], results, data.get("metrics") or {})


def plain(value: Any) -> Any:
    """A JSON-safe copy of a value from a frame or a GX result."""
    if value is None or type(value) in (int, str, bool):  # most values: asked first
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NaT or (isinstance(value, pd.Timestamp | dt.date)):
        return None if value is pd.NaT else value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def outcome(of: Rule | None, **fields: Any) -> Outcome:
    """One expectation's answer; ``of`` is None for those computed here rather than by GX."""
    base = {
        "rule": of.name if of else fields.pop("rule"),
        "expectation": of.expectation.expectation_type if of else "computed by flywheel",
        "column": of.column if of else fields.pop("column", None),
        "severity": of.severity if of else fields.pop("severity"),
    }
    return Outcome(**base, **{k: plain(v) for k, v in fields.items()})
