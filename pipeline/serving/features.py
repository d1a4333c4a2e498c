"""A version's preprocessing compiled for serving: raw JSON records in, model tensors out.

Serving computes exactly the features training computed, from the model version alone. The
version's ``serving.json`` holds the task spec and the lagged-rate tables (rates per group as of
the day after the newest data the version was trained and evaluated on); its
``preprocessing.json`` holds the vocabularies, means and scales. At load time these become plain
dict lookups and NumPy vectors (:class:`CompiledFeatures`), so no pandas runs per request; a test
proves on real rows that this fast path equals ``clean_day`` plus ``Preprocessor.transform``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.timestamps import parse_timestamp
from pipeline.model.features import OOV_INDEX, Preprocessor
from pipeline.model.registry import ModelVersionError
from pipeline.task import TaskSpec


class RecordError(ValueError):
    """A record that cannot be scored; ``index`` and ``field`` say where."""

    def __init__(self, index: int, field: str, message: str):
        super().__init__(f"record {index}: {field}: {message}")
        self.index, self.field, self.message = index, field, message


def _number(value: Any) -> float | None:
    """A float (NaN for a missing value), or None for a value that is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float, e.g. 10**400
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


# A number farther than this many training standard deviations from the training mean is
# refused: standardized, it would overflow float32 (1e42) or the network's sums, and the score
# would be NaN. No real measurement is a million standard deviations out.
MAX_STANDARD_UNITS = 1e6

_CALENDAR = {
    "hour": lambda ts: ts.hour,
    "day_of_week": lambda ts: ts.weekday(),
    "month": lambda ts: ts.month,
}


@dataclass
class CompiledFeatures:
    """A version's preprocessing as dict lookups and NumPy vectors: raw records in, tensors out.

    Mirrors ``clean_day`` (types, calendar features, lagged rates) followed by
    ``Preprocessor.transform``; ``tests/pipeline/serving/test_features.py`` proves they agree.
    """

    spec: TaskSpec
    categorical: list[tuple[str, dict[str, int]]]  # (raw column, value -> embedding index)
    calendar: list[tuple[str, dict[str, int]]]  # (calendar part, value -> index)
    numeric: list[str]
    lags: list[tuple[tuple[str, ...], dict[tuple[str, ...], float]]]
    means: np.ndarray  # (n_numeric,) float64, model order: numeric columns then lagged rates
    scales: np.ndarray
    required: tuple[str, ...] = field(default=())
    # (n_numeric,) the range of each raw numeric column that the model takes (MAX_STANDARD_UNITS)
    bounds: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def compile(
        cls, spec: TaskSpec, prep: Preprocessor, serving: dict[str, Any]
    ) -> CompiledFeatures:
        def lookup(col: str) -> dict[str, int]:
            return {v: i + 1 for i, v in enumerate(prep.vocabularies[col])}

        tables = {t["feature"]: t for t in serving.get("lagged_rates", [])}
        lags = []
        for rule in spec.lagged_rates:
            if rule.feature_name not in tables:
                raise ModelVersionError(f"serving.json has no table for {rule.feature_name}")
            n = len(rule.by)
            rows = tables[rule.feature_name]["rows"]
            lags.append((rule.by, {tuple(r[:n]): float(r[n]) for r in rows}))
        if list(prep.categorical) != list(spec.model_categorical) or list(prep.numeric) != list(
            spec.model_numeric
        ):
            raise ModelVersionError("preprocessing.json does not match the version's task spec")
        means = np.array([prep.means[c] for c in prep.numeric], dtype=np.float64)
        scales = np.array([prep.scales[c] for c in prep.numeric], dtype=np.float64)
        reach = MAX_STANDARD_UNITS * scales[: len(spec.numeric)]
        return cls(
            spec=spec,
            categorical=[(c, lookup(c)) for c in spec.categorical],
            calendar=[
                (name, lookup(feat))
                for name, feat in zip(spec.calendar, spec.calendar_features, strict=True)
            ],
            numeric=list(spec.numeric),
            lags=lags,
            means=means,
            scales=scales,
            required=spec.input_columns,
            bounds=list(zip((means[: len(reach)] - reach).tolist(),
                            (means[: len(reach)] + reach).tolist(), strict=True)),
        )  # fmt: skip

    def transform(self, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """``(categorical, numeric)``: ``(rows, n_cat)`` int64 and ``(rows, 2*n_num)`` float32.

        Raises:
            RecordError: naming the record and the field that is missing or not usable.
        """
        n, ts_col = len(records), self.spec.timestamp
        cat = np.zeros((n, len(self.categorical) + len(self.calendar)), dtype=np.int64)
        raw = np.empty((n, len(self.numeric) + len(self.lags)), dtype=np.float64)
        k_cal, k_lag = len(self.categorical), len(self.numeric)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise RecordError(i, "record", "must be an object")
            for col in self.required:
                if col not in rec:
                    raise RecordError(i, col, "field required")
            ts = parse_timestamp(rec[ts_col])
            if ts is None:
                raise RecordError(
                    i, ts_col, "must be an ISO-8601 timestamp (years 1 to 9999 in UTC)"
                )
            row = cat[i]
            for j, (col, vocab) in enumerate(self.categorical):
                value = rec[col]
                row[j] = OOV_INDEX if value is None else vocab.get(str(value), OOV_INDEX)
            for j, (part, vocab) in enumerate(self.calendar, k_cal):
                row[j] = vocab.get(str(_CALENDAR[part](ts)), OOV_INDEX)
            values = raw[i]
            for j, col in enumerate(self.numeric):
                number = _number(rec[col])
                if number is None:
                    raise RecordError(i, col, "is not a number")
                low, high = self.bounds[j]
                if not low <= number <= high and number == number:  # (NaN: missing, allowed)
                    raise RecordError(i, col, _out_of_range(rec[col], number, low, high))
                values[j] = number
            for j, (by, table) in enumerate(self.lags, k_lag):
                values[j] = table.get(tuple(str(rec[c]) for c in by), math.nan)
        missing = ~np.isfinite(raw)
        num = np.zeros((n, 2 * raw.shape[1]), dtype=np.float32)
        num[:, 0::2] = np.where(missing, 0.0, (raw - self.means) / self.scales)
        num[:, 1::2] = missing
        return cat, num


def _out_of_range(value: Any, number: float, low: float, high: float) -> str:
    shown = (
        "is infinite" if math.isinf(number) and not isinstance(value, int) else "is out of range"
    )
    return (
        f"{shown}: the model takes numbers from {low:.6g} to {high:.6g}"
        f" ({MAX_STANDARD_UNITS:g} training standard deviations around the training mean)"
    )


def records_for_api(frame: pd.DataFrame, spec: TaskSpec) -> list[dict[str, Any]]:
    """Raw rows as the JSON records ``/predict`` takes: the raw schema minus the label."""
    cols = list(spec.input_columns)
    part = frame[cols].astype(object).where(frame[cols].notna(), None)
    ts = frame[spec.timestamp]
    out = part.to_dict("records")
    for rec, value in zip(out, ts, strict=True):
        rec[spec.timestamp] = pd.Timestamp(value).isoformat() if pd.notna(value) else None
    return out
