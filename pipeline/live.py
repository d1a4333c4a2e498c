"""Live performance: the served model on labelled predictions, per day and model version.

A prediction's day is the day of its record's timestamp column (in live serving the day it was
made; in a replay, the replayed day), so that it lines up with that day's ``cleaned_features``.
Its label is the matured batch label of the same event (the timestamp and every feature column
the task names, :func:`pipeline.labelled.row_identity`) where there is one (**the batch wins**,
as in training), else its feedback label where its sources agree (one vote each, as in
training; a disputed prediction stays unlabelled), else none yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.cleaning import clean_day
from pipeline.data.timestamps import parse_timestamps
from pipeline.labelled import LABEL_SOURCE, row_identity
from pipeline.task import LABEL_COLUMN, TaskSpec

MIN_CLASS_LABELS = 20  # ROC-AUC only when both classes have at least this many labels
LIVE_COLUMNS = ["prediction_id", "model_version", "score", LABEL_COLUMN, LABEL_SOURCE]


def record_days(records: list[dict[str, Any]], spec: TaskSpec) -> pd.Series:
    """The UTC day of each record's timestamp (NaT-free: records without one are dropped)."""
    ts = parse_timestamps(pd.Series([r.get(spec.timestamp) for r in records], dtype=object))
    return ts.dropna().dt.date


def live_rows(
    spec: TaskSpec, scored: pd.DataFrame, day: dt.date, batch: pd.DataFrame | None
) -> pd.DataFrame:
    """The predictions of ``day`` (from :func:`pipeline.feedback.queries.scored_predictions`)
    with their label: the matured batch label (``batch``: that day's cleaned_features) of the same
    event, else the feedback label. Columns: :data:`LIVE_COLUMNS`."""
    if scored.empty:
        return pd.DataFrame(columns=LIVE_COLUMNS)
    days = parse_timestamps(
        pd.Series([r.get(spec.timestamp) for r in scored["record"]], dtype=object)
    ).dt.date
    mine = scored[(days == day).to_numpy()].reset_index(drop=True)
    out = mine[["prediction_id", "model_version", "score"]].copy()
    out[LABEL_COLUMN] = mine["feedback_label"].to_numpy(dtype=np.float64)
    out[LABEL_SOURCE] = np.where(out[LABEL_COLUMN].notna(), "feedback", "")
    labelled = batch[batch[LABEL_COLUMN].notna()] if batch is not None and len(batch) else None
    if len(mine) and labelled is not None and len(labelled):
        raw = pd.DataFrame.from_records(list(mine["record"]))
        for col in spec.input_columns:
            if col not in raw.columns:
                raw[col] = None
        # The inputs cleaned as the day was (no label needed): the same identity as the batch's.
        cleaned = clean_day(raw.assign(**{spec.label.column: None}), day, spec, labelled=False)
        ids = pd.Series(row_identity(labelled, spec)).drop_duplicates()
        by_id = pd.Series(labelled[LABEL_COLUMN].to_numpy()[ids.index], index=ids.to_numpy())
        if len(cleaned.features) == len(mine):  # rows that do not clean keep their feedback
            found = pd.Series(row_identity(cleaned.features, spec)).map(by_id).to_numpy()
            hit = ~np.isnan(found.astype(np.float64))
            out.loc[hit, LABEL_COLUMN] = found[hit].astype(np.float64)
            out.loc[hit, LABEL_SOURCE] = "batch"
    return out[LIVE_COLUMNS]


@dataclass(frozen=True)
class LiveMetrics:
    """One day of one model version (or of all of them, ``model_version`` "all")."""

    model_version: str
    predictions: int
    labelled: int
    labelled_share: float
    roc_auc: float | None
    log_loss: float | None
    brier: float | None
    ece: float | None
    positive_rate: float | None
    mean_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def live_metrics(rows: pd.DataFrame, model_version: str) -> LiveMetrics:
    """The figures of ``rows`` (:data:`LIVE_COLUMNS`): over all predictions (count, mean score)
    and over the labelled ones (the rest); ROC-AUC only with ``MIN_CLASS_LABELS`` of each class."""
    from pipeline.model import metrics  # scikit-learn: only when computed

    n = len(rows)
    done = rows[rows[LABEL_COLUMN].notna()]
    y = done[LABEL_COLUMN].to_numpy(dtype=np.float64)
    p = done["score"].to_numpy(dtype=np.float64)
    m = len(y)
    both = m and min(int(y.sum()), int(m - y.sum())) >= MIN_CLASS_LABELS
    return LiveMetrics(
        model_version=model_version,
        predictions=n,
        labelled=m,
        labelled_share=m / n if n else 0.0,
        roc_auc=metrics.roc_auc(y, p) if both else None,
        log_loss=metrics.log_loss(y, p) if m else None,
        brier=metrics.brier(y, p) if m else None,
        ece=metrics.expected_calibration_error(y, p) if m else None,
        positive_rate=float(y.mean()) if m else None,
        mean_score=float(rows["score"].mean()) if n else None,
    )


def day_metrics(rows: pd.DataFrame) -> list[LiveMetrics]:
    """All versions together ("all"), then each version that served the day, by name."""
    out = [live_metrics(rows, "all")]
    for version, part in sorted(rows.groupby("model_version"), key=lambda kv: str(kv[0])):
        out.append(live_metrics(part, str(version)))
    return out
