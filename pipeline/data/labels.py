"""The label rule of a task applied to raw rows: 0, 1, or unusable with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.task import TaskSpec


def compute_labels(frame: pd.DataFrame, spec: TaskSpec) -> tuple[pd.Series, pd.Series]:
    """The 0/1 label of each row, and the reason (or "") a row's label is unusable."""
    raw = frame[spec.label.column]
    rule = spec.label
    # Plain arrays while the reasons are set (a Series' masked assignment costs far more).
    reason = np.full(len(frame), "", dtype=object)
    missing = raw.isna().to_numpy(dtype=bool)
    if rule.greater_than is not None:
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna().to_numpy(dtype=bool) & ~missing
        reason[bad] = f"label: {rule.column!r} is not a number"
        label = (values > rule.greater_than).astype("float64")
    else:
        positives = {str(v) for v in rule.positive_values or ()}
        label = raw.astype(str).isin(positives).astype("float64")
        allowed = dict(spec.checks).get(rule.column)
        if allowed is not None and allowed.allowed is not None:  # else any value is a negative
            known = raw.astype(str).isin({str(v) for v in allowed.allowed}).to_numpy(dtype=bool)
            reason[~known & ~missing] = f"label: {rule.column!r} is not one of the allowed values"
    values = label.to_numpy(dtype="float64", copy=True)
    if rule.missing_is_positive:
        values[missing] = 1.0
    else:
        reason[missing] = f"label: {rule.column!r} is missing"
    values[reason != ""] = np.nan
    label = pd.Series(values, index=frame.index, name=label.name)
    return label, pd.Series(reason, index=frame.index, dtype=object)
