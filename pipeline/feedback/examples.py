"""Feedback as training rows: each labelled prediction's logged inputs, cleaned like a day."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.data.cleaning import QUARANTINE_REASON, clean_day
from pipeline.data.storage import PartitionStore
from pipeline.data.timestamps import parse_timestamps
from pipeline.task import LABEL_COLUMN, TaskSpec

FEEDBACK_META = ("feedback_id", "feedback_source", "prediction_id", "model_version")


@dataclass
class FeedbackExamples:
    """Feedback turned into training rows: cleaned like ``cleaned_features``, plus metadata."""

    features: pd.DataFrame  # the cleaned columns, then FEEDBACK_META
    quarantine: pd.DataFrame  # the raw examples that failed cleaning, with their reason

    @property
    def newest_feedback_id(self) -> int | None:
        ids = [*self.features["feedback_id"], *self.quarantine.get("feedback_id", [])]
        return int(max(ids)) if ids else None


def _label_values(spec: TaskSpec, labels: pd.Series) -> pd.Series:
    """Raw label-column values that the task's label rule maps to ``labels`` (0 or 1)."""
    rule = spec.label
    if rule.greater_than is not None:
        return labels.map({1: rule.greater_than + 1.0, 0: rule.greater_than}).astype("float64")
    positives = [str(v) for v in rule.positive_values or ()]
    # Where the task's checks list the label's allowed values, a negative must be one of them.
    allowed = dict(spec.checks).get(rule.column)
    choices = [v for v in (allowed.allowed or () if allowed else ()) if str(v) not in positives]
    negative = choices[0] if choices else "__flywheel_negative__"
    return labels.map({1: rule.positive_values[0], 0: negative}).astype(object)


def clean_feedback(spec: TaskSpec, examples: pd.DataFrame, raw: PartitionStore) -> FeedbackExamples:
    """Cleans labelled examples (see :meth:`FeedbackStore.labelled_examples`) with
    :func:`pipeline.data.cleaning.clean_day`, day by day, with the raw days before each as history
    for the lagged rates, exactly as ``cleaned_features`` does; the feedback gives the label."""
    meta = [*FEEDBACK_META, "feedback_label"]
    columns = list(spec.input_columns)
    empty = pd.DataFrame(columns=[spec.timestamp, LABEL_COLUMN, *meta])
    if examples.empty:
        return FeedbackExamples(empty, pd.DataFrame(columns=[*columns, QUARANTINE_REASON]))
    frame = examples.reset_index(drop=True).copy()
    for col in columns:
        if col not in frame.columns:
            frame[col] = None
    frame[spec.label.column] = _label_values(spec, frame["feedback_label"])
    ts = parse_timestamps(frame[spec.timestamp])
    bad_ts = frame[ts.isna()].assign(
        **{QUARANTINE_REASON: f"timestamp: {spec.timestamp!r} does not parse"}
    )
    cleaned, quarantined = [], [bad_ts] if len(bad_ts) else []
    for day, rows in frame[ts.notna()].groupby(ts[ts.notna()].dt.date):
        history, _ = raw.read_many(spec.history_days(day))
        # clean_day keeps row order and carries every raw column (the metadata too) into its
        # quarantine, so the kept rows line up with its features.
        result = clean_day(rows, day, spec, history if len(history) else None)
        failed = set(result.quarantine["feedback_id"]) if len(result.quarantine) else set()
        kept = rows[~rows["feedback_id"].isin(failed)]
        features = result.features
        for col in FEEDBACK_META:
            features[col] = kept[col].to_numpy()
        if not (features[LABEL_COLUMN].to_numpy() == kept["feedback_label"].to_numpy()).all():
            raise RuntimeError(f"feedback labels of {day} did not survive cleaning")
        cleaned.append(features)
        if len(result.quarantine):
            quarantined.append(result.quarantine)
    features = pd.concat(cleaned, ignore_index=True) if cleaned else empty
    quarantine = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame()
    quarantine = quarantine.drop(columns=[spec.label.column], errors="ignore")
    return FeedbackExamples(features.sort_values("feedback_id", ignore_index=True), quarantine)
