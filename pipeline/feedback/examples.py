"""Feedback as training rows: each labelled prediction's logged inputs, cleaned like a day.

Labels from several sources: each source has one vote per prediction (the store keeps one
label per prediction and source). A prediction is a training row only when every source that
labelled it agrees; where sources disagree it is quarantined with the votes as its reason, so
that a caller posting under a new source name can keep a prediction out of training but never
flip its label.

One bad row never fails the whole run: a row whose text is not valid Unicode, or that makes the
cleaning of its day raise, is quarantined with its reason like any row that fails cleaning,
and the quarantine is written as text where its values would not fit a Parquet column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
    frame, disputed = _count_votes(examples.reset_index(drop=True))
    for col in columns:
        if col not in frame.columns:
            frame[col] = None
    frame[spec.label.column] = _label_values(spec, frame["feedback_label"])
    frame, quarantined = _screen_text(frame)
    if len(disputed):
        quarantined.append(disputed.drop(columns=[spec.label.column], errors="ignore"))
    ts = parse_timestamps(frame[spec.timestamp])
    bad_ts = frame[ts.isna()].assign(
        **{QUARANTINE_REASON: f"timestamp: {spec.timestamp!r} does not parse"}
    )
    cleaned = []
    if len(bad_ts):
        quarantined.append(bad_ts)
    for day, rows in frame[ts.notna()].groupby(ts[ts.notna()].dt.date):
        history, _ = raw.read_many(spec.history_days(day))
        # clean_day keeps row order and carries every raw column (the metadata too) into its
        # quarantine, so the kept rows line up with its features.
        result, rows, broken = _clean_rows(rows, day, spec, history if len(history) else None)
        if len(broken):
            quarantined.append(broken)
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
    if len(quarantine):
        quarantine = _as_storable(quarantine.sort_values("feedback_id", ignore_index=True))
    return FeedbackExamples(features.sort_values("feedback_id", ignore_index=True), quarantine)


def _count_votes(votes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per prediction from its votes (one per source): where all agree, the newest vote
    with every source named (``"app,audit"``); and the predictions whose sources disagree, each
    as its newest vote with the votes as the reason."""
    by_prediction = votes.groupby("prediction_id", sort=False)
    newest = votes.loc[by_prediction["feedback_id"].idxmax()].set_index("prediction_id")
    sources = by_prediction["feedback_source"].agg(lambda s: ",".join(sorted(s)))
    labels = by_prediction["feedback_label"].nunique()
    newest["feedback_source"] = sources
    order = list(votes.columns)
    agreed = newest[labels == 1].reset_index()[order]
    disputed = newest[labels > 1]
    if disputed.empty:
        return agreed, votes.iloc[:0]
    cast = votes[votes["prediction_id"].isin(disputed.index)].sort_values("feedback_source")
    said = cast.groupby("prediction_id")[["feedback_source", "feedback_label"]].apply(
        lambda g: ", ".join(f"{s}={label}" for s, label in g.itertuples(index=False))
    )
    reason = "label: sources disagree (" + said[disputed.index] + ")"
    disputed = disputed.assign(**{QUARANTINE_REASON: reason}).reset_index()
    return agreed, disputed[[*order, QUARANTINE_REASON]]


def _screen_text(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """``frame`` without the rows holding a string that is not valid Unicode (a lone surrogate:
    JSON can spell it, UTF-8 cannot store it, so no Parquet file could hold the row), and those
    rows, each with the first such column as its reason."""
    reason = pd.Series("", index=frame.index, dtype=object)
    for col in frame.columns:
        if frame[col].dtype != object:
            continue
        bad = frame[col].map(_not_unicode).astype(bool) & (reason == "")
        reason[bad] = f"text: {col!r} is not valid Unicode (a lone surrogate)"
    hit = reason != ""
    if not hit.any():
        return frame, []
    return frame[~hit], [frame[hit].assign(**{QUARANTINE_REASON: reason[hit]})]


def _not_unicode(value: Any) -> bool:
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean_rows(rows: pd.DataFrame, day, spec: TaskSpec, history):
    """``clean_day`` of one day's rows; if it raises, row by row, so that the rows it raises on
    are quarantined with the error and the others are cleaned as usual.

    Returns:
        (the result for the rows kept, those rows, the rows that raised with their reason)
    """
    try:
        return clean_day(rows, day, spec, history), rows, rows.iloc[:0]
    except Exception:  # one row's doing: found below, row by row
        pass
    good, broken = [], []
    for i in range(len(rows)):
        row = rows.iloc[i : i + 1]
        try:
            clean_day(row, day, spec, history)
            good.append(i)
        except Exception as err:  # quarantined with the error, never failing the whole run
            why = f"cleaning failed: {type(err).__name__}: {err}"
            broken.append(row.assign(**{QUARANTINE_REASON: why}))
    kept = rows.iloc[good]
    # The kept rows once more, together: the result keeps their order, as the caller needs.
    result = clean_day(kept, day, spec, history)
    return result, kept, pd.concat(broken) if broken else rows.iloc[:0]


def _as_storable(frame: pd.DataFrame) -> pd.DataFrame:
    """The quarantine as a Parquet file can hold it: in a text column, a string that is not
    valid Unicode is escaped (``"\\ud800"``); a column that mixes kinds of values (strings,
    numbers, objects from a logged record) becomes text, objects as JSON."""
    out = frame.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype != object:
            continue
        present = values.dropna()
        if present.map(lambda v: isinstance(v, str)).all():
            out[col] = values.map(_escaped, na_action="ignore")
        elif not present.map(lambda v: isinstance(v, int | float | bool)).all():
            out[col] = values.map(_as_text, na_action="ignore")
    return out


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, dict | list):
        return _escaped(json.dumps(value, default=str))
    return str(value)
