"""Labelled rows for training and the holdout: batch rows whose labels have matured, and feedback.

A batch row is labelled once ``label_delay_days`` have passed since its day
(:mod:`pipeline.data.maturity`); feedback is labelled the moment it arrives. Windows count
**labelled days** (days with batch labels, or with feedback): the holdout is the newest
``holdout_days`` of them, training the ``window_days`` before, split by time. Days known to hold no
label (not matured, no feedback) are skipped rather than counted.

One row, one label: a feedback example and a matured batch row with the same inputs (the
timestamp and every feature column the task names) are the same event. **The batch label wins**:
the batch source is the system of record, complete and audited, and feedback only bridges the
wait for it; the superseded feedback rows are counted, never trained or evaluated on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.data.maturity import label_matured
from pipeline.data.storage import PartitionStore, parquet_source
from pipeline.model.params import TrainingError
from pipeline.task import LABEL_COLUMN, TaskSpec

HOLDOUT_FILE = "holdout.parquet"  # the version's holdout rows, with LABEL_SOURCE
LABEL_SOURCE = "label_source"  # "batch" or "feedback"


def days_ending(end: dt.date, n: int) -> list[dt.date]:
    """The ``n`` days ending with ``end`` (inclusive), oldest first."""
    return [end - dt.timedelta(days=i) for i in range(n - 1, -1, -1)]


@dataclass(frozen=True)
class Window:
    train_days: list[dt.date]
    holdout_days: list[dt.date]

    def to_dict(self) -> dict[str, str]:
        return {
            "train_start": self.train_days[0].isoformat(),
            "train_end": self.train_days[-1].isoformat(),
            "holdout_start": self.holdout_days[0].isoformat(),
            "holdout_end": self.holdout_days[-1].isoformat(),
        }


def _days_back(end: dt.date, n: int, skip: frozenset[dt.date]) -> list[dt.date]:
    """The ``n`` days up to ``end`` that are not in ``skip``, oldest first."""
    out, day = [], end
    while len(out) < n:
        if day not in skip:
            out.append(day)
        day -= dt.timedelta(days=1)
    return out[::-1]


def choose_window(
    available: list[dt.date],
    window_days: int,
    holdout_days: int,
    end: dt.date | None = None,
    skip: frozenset[dt.date] = frozenset(),
) -> Window:
    """The latest ``holdout_days`` (ending at ``end`` or the newest available day) are held
    out; training takes the ``window_days`` days before them. Days in ``skip`` (known to hold no
    label) are not counted. The split is by time."""
    if end is None:
        if not available:
            raise TrainingError(
                "no labelled days exist yet: materialize raw_data and cleaned_features first"
                " (a task with label_delay_days needs days at least that old, or feedback)"
            )
        end = max(available)
    holdout = _days_back(end, holdout_days, skip)
    train = _days_back(holdout[0] - dt.timedelta(days=1), window_days, skip)
    return Window(train, holdout)


def row_identity(frame: pd.DataFrame, spec: TaskSpec) -> np.ndarray:
    """One number per row from its timestamp and feature columns: equal for a feedback example
    and the batch row of the same event (both are cleaned by the same code)."""
    if frame.empty:
        return np.zeros(0, dtype=np.uint64)
    ts = pd.to_datetime(frame[spec.timestamp], utc=True).astype("datetime64[ns, UTC]")
    parts = {"__ts": ts.astype("int64")}
    for col in spec.categorical:
        parts[col] = frame[col].astype(object).where(frame[col].notna(), None).astype(str)
    for col in spec.numeric:
        parts[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return pd.util.hash_pandas_object(pd.DataFrame(parts), index=False).to_numpy()


def drop_superseded(
    feedback: pd.DataFrame, batch: pd.DataFrame, spec: TaskSpec
) -> tuple[pd.DataFrame, int]:
    """Feedback examples without a labelled batch row of the same event (the batch wins), and
    how many were dropped."""
    if feedback.empty or batch.empty:
        return feedback, 0
    labelled = batch[batch[LABEL_COLUMN].notna()]
    taken = np.isin(row_identity(feedback, spec), row_identity(labelled, spec))
    return feedback[~taken].reset_index(drop=True), int(taken.sum())


def day_is_labelled(
    store: PartitionStore, day: dt.date, spec: TaskSpec, as_of: dt.date | None
) -> bool:
    """Whether a stored day holds batch labels (on the clock ``as_of``, when given)."""
    if as_of is not None and not label_matured(day, as_of, spec.label_delay_days):
        return False
    column = pq.read_table(parquet_source(store.path(day)), columns=[LABEL_COLUMN]).column(0)
    return column.null_count == 0  # an unmatured day is unlabelled whole


@dataclass(frozen=True)
class Selection:
    """The rows one version is trained and held out on."""

    window: Window
    train: pd.DataFrame  # labelled batch rows of the training days
    feedback: pd.DataFrame  # feedback examples of the training days (join training)
    holdout: pd.DataFrame  # labelled rows of the holdout days, batch and feedback, LABEL_SOURCE
    missing: list[dt.date]  # training days with no cleaned_features partition
    superseded: int = 0  # feedback rows dropped for a matured batch row of the same event
    feedback_days: dict[str, int] = field(default_factory=dict)  # feedback rows used, per day


def _labelled_batch(frame: pd.DataFrame, days: list[dt.date], spec, as_of) -> pd.DataFrame:
    if frame.empty:
        return frame
    keep = frame[LABEL_COLUMN].notna().to_numpy()
    if as_of is not None:
        day = pd.to_datetime(frame[spec.timestamp], utc=True).dt.date
        ok = {d for d in days if label_matured(d, as_of, spec.label_delay_days)}
        keep = keep & day.isin(ok).to_numpy()
    out = frame[keep].reset_index(drop=True)
    return out.assign(**{LABEL_COLUMN: out[LABEL_COLUMN].astype("int8")})


def select_rows(
    spec: TaskSpec,
    features: PartitionStore,
    window_days: int,
    holdout_days: int,
    feedback: pd.DataFrame | None = None,
    end: dt.date | None = None,
    as_of: dt.date | None = None,
    left_out: frozenset[dt.date] = frozenset(),
) -> Selection:
    """The window over labelled days and its rows. ``as_of`` (the run's clock, when given) also
    hides stored batch labels that had not matured by then; without it, stored labels are used
    as they are and days not yet stored are skipped while they cannot have matured today.
    ``left_out`` days (failed blocking checks) are neither trained nor evaluated on."""
    clock = as_of or dt.datetime.now(dt.UTC).date()
    stored = features.days()
    fb = feedback if feedback is not None else pd.DataFrame()
    fb_day = pd.to_datetime(fb[spec.timestamp], utc=True).dt.date if len(fb) else pd.Series()
    fb_days = set(fb_day)
    labelled = {d for d in stored if day_is_labelled(features, d, spec, as_of)}
    unmatured = {clock - dt.timedelta(days=k) for k in range(spec.label_delay_days)}
    skip = frozenset(
        ({d for d in stored if d not in labelled} | (unmatured - set(stored))) - fb_days
    )
    window = choose_window(sorted(labelled | fb_days), window_days, holdout_days, end, skip)
    train_days = [d for d in window.train_days if d not in left_out]
    hold_days = [d for d in window.holdout_days if d not in left_out]
    train, missing = features.read_many(train_days)
    train = _labelled_batch(train, train_days, spec, as_of)
    hold, _ = features.read_many(hold_days)
    hold = _labelled_batch(hold, hold_days, spec, as_of)
    fb_train = fb[fb_day.isin(set(train_days)).to_numpy()] if len(fb) else fb
    fb_hold = fb[fb_day.isin(set(hold_days)).to_numpy()] if len(fb) else fb
    fb_train, dropped_train = drop_superseded(fb_train, train, spec)
    fb_hold, dropped_hold = drop_superseded(fb_hold, hold, spec)
    columns = list(train.columns if len(train) else hold.columns)
    if not columns:
        columns = [spec.timestamp, LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    parts = [hold.assign(**{LABEL_SOURCE: "batch"})] if len(hold) else []
    if len(fb_hold):
        parts.append(fb_hold[columns].assign(**{LABEL_SOURCE: "feedback"}))
    holdout = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    used = pd.concat([fb_train, fb_hold], ignore_index=True) if len(fb) else fb
    per_day = pd.to_datetime(used[spec.timestamp], utc=True).dt.date.value_counts() if len(
        used) else pd.Series(dtype=int)  # fmt: skip
    return Selection(
        window=window, train=train, feedback=fb_train.reset_index(drop=True), holdout=holdout,
        missing=missing, superseded=dropped_train + dropped_hold,
        feedback_days={d.isoformat(): int(n) for d, n in sorted(per_day.items())},
    )  # fmt: skip
