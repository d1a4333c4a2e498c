"""The life-cycle steps: one function per asset, each returning a dataclass.

An asset reads its inputs and resources, calls one of these, and turns the result into its value
and metadata (the Markdown and plots for the UI are built in ``assets/``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data.cleaning import clean_day
from pipeline.data.lagged import history_of, lag_tables
from pipeline.data.maturity import label_matured, matures_on
from pipeline.data.sources import Source
from pipeline.data.storage import CachedReader, PartitionStore, write_parquet_atomic
from pipeline.evaluation import by_source
from pipeline.labelled import HOLDOUT_FILE, Window, select_rows
from pipeline.model.params import TrainingError, TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.task import LABEL_COLUMN, TaskSpec


# -- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestedDay:
    day: dt.date
    rows: int
    columns: list[str]
    frame: pd.DataFrame


def ingest_day(source: Source, store: PartitionStore, day: dt.date) -> IngestedDay:
    """Reads the day's rows from the source and replaces the ``raw_data`` partition."""
    frame = source.read_day(day)
    store.write(day, frame)
    return IngestedDay(day, len(frame), [str(c) for c in frame.columns], frame)


@dataclass(frozen=True)
class Unassigned:
    rows: int
    path: Path


def keep_unassigned(source: Source, path: Path) -> Unassigned:
    """Replaces the file (``path``) of the source rows that belong to no day (their timestamp is
    missing or does not parse), so that no source row is lost; removes it when there are none."""
    frame = source.read_unassigned()
    if frame.empty:
        path.unlink(missing_ok=True)
    else:
        write_parquet_atomic(frame, path)
    return Unassigned(len(frame), path)


@dataclass(frozen=True)
class FeatureDay:
    day: dt.date
    rows: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    positive_rate: float | None
    history_days_missing: list[str]
    frame: pd.DataFrame
    quarantine_path: Path
    labelled: bool = True
    label_matures_on: dt.date | None = None

    @property
    def unlabelled_rows(self) -> int:
        return 0 if self.labelled else self.rows


def build_features_day(
    spec: TaskSpec,
    raw: PartitionStore,
    features: PartitionStore,
    day: dt.date,
    reader: CachedReader | None = None,
    as_of: dt.date | None = None,
) -> FeatureDay:
    """Cleans the day's raw rows, adds lagged rates from earlier days, replaces the partition.

    A run over many days passes one ``reader`` for all of them, so each raw day is read once.
    ``as_of`` is the run's clock: until ``spec.label_delay_days`` have passed since ``day`` its
    rows are kept unlabelled (label NaN). None: every label is usable.
    """
    reader = reader or CachedReader(raw, spec.lag_reach_days)
    if not raw.exists(day):
        raise FileNotFoundError(
            f"partition {day}: raw_data has not been materialized ({raw.path(day)})"
        )
    try:
        today = reader.read(day)
    except (OSError, ValueError) as err:  # e.g. a truncated file: say which one
        raise ValueError(f"partition {day}: cannot read {raw.path(day)}: {err}") from err
    lag_days = spec.history_days(day)
    try:
        found, missing_history = reader.read_each(lag_days)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"partition {day}: cannot read its raw_data history {lag_days[0]}..{lag_days[-1]}"
            f" under {raw.root}: {err}"
        ) from err
    history = history_of(spec, reader, found)
    labelled = as_of is None or label_matured(day, as_of, spec.label_delay_days)
    result = clean_day(today, day, spec, history, labelled=labelled)
    features.write(day, result.features, result.quarantine)
    rows = len(result.features)
    return FeatureDay(
        day=day,
        rows=rows,
        quarantined=len(result.quarantine),
        quarantine_reasons=result.quarantine_reasons,
        positive_rate=float(result.features[LABEL_COLUMN].mean()) if rows and labelled else None,
        history_days_missing=[d.isoformat() for d in missing_history],
        frame=result.features,
        quarantine_path=features.quarantine_path(day),
        labelled=labelled,
        label_matures_on=matures_on(day, spec.label_delay_days),
    )


# -- model --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainedVersion:
    """A saved challenger: what the asset shows; ``training`` is its whole ``training.json``."""

    version: str
    path: Path
    window: Window
    rows: int
    val_rows: int
    feedback_rows: int
    epochs_run: int
    best_val_loss: float | None
    threshold: float
    parameter_count: int
    seconds: float
    train_days_missing: list[str]
    days_left_out: dict[str, str]
    training: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class FittedChallenger:
    """A challenger trained but not saved yet (every DDP process has one; rank 0 saves it)."""

    outcome: Any  # pipeline.model.training.TrainOutcome (torch: imported where trained)
    holdout: pd.DataFrame
    window: Window
    training: dict[str, Any] = field(repr=False)


def train_version(
    spec: TaskSpec,
    features: PartitionStore,
    registry: ModelRegistry,
    params: TrainParams,
    root_dir: Path,
    end: dt.date | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    raw: PartitionStore | None = None,
    extra: pd.DataFrame | None = None,
    extra_weight: float = 1.0,
    left_out: dict[str, str] | None = None,
    min_train_days: int = 1,
    as_of: dt.date | None = None,
) -> TrainedVersion:
    """Trains a challenger on the window before the holdout days and saves it as a version.

    ``left_out`` maps days (ISO dates) whose latest blocking data check failed to why: they are
    neither trained nor evaluated on. Fewer than ``min_train_days`` usable days is an error.

    With ``raw`` (the raw_data store) the version also gets ``serving.json``: the task and the
    lagged-rate tables as of the day after its holdout, all that serving needs besides the
    weights. ``extra`` (cleaned feedback examples) joins training with weight ``extra_weight``
    on the training days, and the holdout on the holdout days (windows of labelled days; a
    matured batch row wins over feedback for the same event: :func:`pipeline.labelled.select_rows`).
    ``as_of`` (the run's clock) hides stored batch labels that had not matured by then.
    """
    fitted = fit_challenger(
        spec, features, params, root_dir, end=end, on_epoch=on_epoch, extra=extra,
        extra_weight=extra_weight, left_out=left_out, min_train_days=min_train_days, as_of=as_of,
    )  # fmt: skip
    return save_challenger(fitted, spec, registry, raw)


def fit_challenger(
    spec: TaskSpec,
    features: PartitionStore,
    params: TrainParams,
    root_dir: Path,
    end: dt.date | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    extra: pd.DataFrame | None = None,
    extra_weight: float = 1.0,
    left_out: dict[str, str] | None = None,
    min_train_days: int = 1,
    as_of: dt.date | None = None,
) -> FittedChallenger:
    """The training half of :func:`train_version` (the same arguments): rows chosen, model fit."""
    from pipeline.model.training import train_model  # torch and Lightning: only here

    nominal_out = {dt.date.fromisoformat(d) for d in (left_out or {})}
    chosen = select_rows(spec, features, params.window_days, params.holdout_days, extra, end,
                         as_of, frozenset(nominal_out))  # fmt: skip
    window = chosen.window
    nominal = {d.isoformat() for d in (*window.train_days, *window.holdout_days)}
    left_out = {d: why for d, why in sorted((left_out or {}).items()) if d in nominal}
    train_days = [d for d in window.train_days if d.isoformat() not in left_out]
    holdout_days = [d for d in window.holdout_days if d.isoformat() not in left_out]
    usable = [d for d in train_days if features.exists(d)]
    if (usable or left_out) and (len(usable) < min_train_days or not holdout_days):
        raise TrainingError(
            f"only {len(usable)} usable training day(s) (min_train_days {min_train_days}) and"
            f" {len(holdout_days)} holdout day(s) in"
            f" {window.train_days[0]}..{window.holdout_days[-1]}; left out by failed blocking"
            f" data checks: {left_out or 'none'}"
        )
    frame, missing = chosen.train, chosen.missing
    if frame.empty:
        raise TrainingError(
            "no labelled cleaned rows in the training window"
            f" {window.train_days[0]}..{window.train_days[-1]}"
            f" ({len(missing)} of {len(window.train_days)} days not materialized; labels of a"
            f" day are usable {spec.label_delay_days} day(s) after it)"
        )
    extra = chosen.feedback
    outcome = train_model(frame, spec, params, root_dir, on_epoch, extra, extra_weight)
    training = {
        "task": spec.name,
        "window": window.to_dict(),
        "holdout_days": [d.isoformat() for d in holdout_days],
        "days_left_out": left_out,
        "train_days_missing": [d.isoformat() for d in missing],
        "rows": len(frame),
        "train_rows": outcome.train_rows,
        "val_rows": outcome.val_rows,
        "prior": float(frame[LABEL_COLUMN].mean()),
        "threshold": outcome.threshold,
        "epochs_run": outcome.epochs_run,
        "refit_epochs": outcome.refit_epochs,
        "best_val_loss": outcome.best_val_loss,
        "history": outcome.history,
        "seconds": round(outcome.seconds, 2),
        "params": params.to_dict(),
        "parameter_count": outcome.parameter_count,
        "feedback_rows": len(extra),
        "feedback_weight": extra_weight,
        "feedback_rows_by_day": chosen.feedback_days,
        "feedback_superseded": chosen.superseded,
        "holdout_rows": by_source(chosen.holdout),
        "label_delay_days": spec.label_delay_days,
        "as_of": as_of.isoformat() if as_of else None,
    }
    return FittedChallenger(outcome, chosen.holdout, window, training)


def save_challenger(
    fitted: FittedChallenger,
    spec: TaskSpec,
    registry: ModelRegistry,
    raw: PartitionStore | None = None,
) -> TrainedVersion:
    """The saving half of :func:`train_version`: the version, its holdout rows and serving.json."""
    outcome, window, training = fitted.outcome, fitted.window, fitted.training
    documents = None
    if raw is not None:
        as_of = window.holdout_days[-1] + dt.timedelta(days=1)
        documents = {"serving.json": {"task": spec.to_mapping(), **lag_tables(spec, raw, as_of)}}
    version = registry.save_version(outcome.module, outcome.preprocessor, training, documents)
    write_parquet_atomic(fitted.holdout, registry.path(version) / HOLDOUT_FILE)
    shown = ("rows", "val_rows", "feedback_rows", "epochs_run", "best_val_loss", "threshold",
             "parameter_count", "seconds", "train_days_missing", "days_left_out")  # fmt: skip
    return TrainedVersion(
        version, registry.path(version), window, **{k: training[k] for k in shown},
        training=training,
    )  # fmt: skip
