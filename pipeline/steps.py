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

import numpy as np
import pandas as pd

from pipeline.data.cleaning import clean_day
from pipeline.data.lagged import history_of, lag_tables
from pipeline.data.sources import Source
from pipeline.data.storage import CachedReader, PartitionStore, write_parquet_atomic
from pipeline.gate import SCORES_FILE, members_columns
from pipeline.model.params import TrainingError, TrainParams
from pipeline.model.registry import ModelRegistry, ModelVersionError
from pipeline.task import LABEL_COLUMN, TaskSpec


class EvaluationError(RuntimeError):
    """The evaluation could not run; the message says why."""


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


def choose_window(
    available: list[dt.date], window_days: int, holdout_days: int, end: dt.date | None = None
) -> Window:
    """The latest ``holdout_days`` (ending at ``end`` or the newest available day) are held
    out; training takes the ``window_days`` days before them. The split is by time."""
    if end is None:
        if not available:
            raise TrainingError(
                "no cleaned_features partitions exist yet: materialize raw_data and"
                " cleaned_features first"
            )
        end = max(available)
    holdout = days_ending(end, holdout_days)
    train = days_ending(holdout[0] - dt.timedelta(days=1), window_days)
    return Window(train, holdout)


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


def build_features_day(
    spec: TaskSpec,
    raw: PartitionStore,
    features: PartitionStore,
    day: dt.date,
    reader: CachedReader | None = None,
) -> FeatureDay:
    """Cleans the day's raw rows, adds lagged rates from earlier days, replaces the partition.

    A run over many days passes one ``reader`` for all of them, so each raw day is read once.
    """
    reader = reader or CachedReader(raw, spec.max_lag_days)
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
    result = clean_day(today, day, spec, history)
    features.write(day, result.features, result.quarantine)
    rows = len(result.features)
    return FeatureDay(
        day=day,
        rows=rows,
        quarantined=len(result.quarantine),
        quarantine_reasons=result.quarantine_reasons,
        positive_rate=float(result.features[LABEL_COLUMN].mean()) if rows else None,
        history_days_missing=[d.isoformat() for d in missing_history],
        frame=result.features,
        quarantine_path=features.quarantine_path(day),
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
) -> TrainedVersion:
    """Trains a challenger on the window before the holdout days and saves it as a version.

    ``left_out`` maps days (ISO dates) whose latest blocking data check failed to why: they are
    neither trained nor evaluated on. Fewer than ``min_train_days`` usable days is an error.

    With ``raw`` (the raw_data store) the version also gets ``serving.json``: the task and the
    lagged-rate tables as of the day after its holdout, all that serving needs besides the
    weights. ``extra`` (cleaned feedback examples) joins training with weight ``extra_weight``.
    """
    from pipeline.model.training import train_model  # torch and Lightning: only here

    window = choose_window(features.days(), params.window_days, params.holdout_days, end)
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
    frame, missing = features.read_many(train_days)
    if frame.empty:
        raise TrainingError(
            "no cleaned rows in the training window"
            f" {window.train_days[0]}..{window.train_days[-1]}"
            f" ({len(missing)} of {len(window.train_days)} days not materialized)"
        )
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
        "best_val_loss": outcome.best_val_loss,
        "history": outcome.history,
        "seconds": round(outcome.seconds, 2),
        "params": params.to_dict(),
        "parameter_count": outcome.parameter_count,
        "feedback_rows": 0 if extra is None else len(extra),
        "feedback_weight": extra_weight,
    }
    documents = None
    if raw is not None:
        as_of = window.holdout_days[-1] + dt.timedelta(days=1)
        documents = {"serving.json": {"task": spec.to_mapping(), **lag_tables(spec, raw, as_of)}}
    version = registry.save_version(outcome.module, outcome.preprocessor, training, documents)
    shown = ("rows", "val_rows", "feedback_rows", "epochs_run", "best_val_loss", "threshold",
             "parameter_count", "seconds", "train_days_missing", "days_left_out")  # fmt: skip
    return TrainedVersion(
        version, registry.path(version), window, **{k: training[k] for k in shown},
        training=training,
    )  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    """The evaluation report (``evaluation.json``) and its plots (PNG, also in the version)."""

    report: dict[str, Any]
    plots: dict[str, bytes]
    path: Path


def evaluate_version(
    features: PartitionStore,
    registry: ModelRegistry,
    version: str,
    slice_columns: tuple[str, ...] = (),
) -> Evaluation:
    """Scores the challenger and the current champion on the challenger's holdout days.

    The rows' labels and both models' scores (and the ``slice_columns``) are kept in the
    version as ``holdout_scores.parquet``, for the gate's paired comparison.
    """
    from pipeline.model import metrics
    from pipeline.model.plots import plots
    from pipeline.model.training import predict_frame, predict_members

    challenger = registry.load(version)
    holdout = [dt.date.fromisoformat(d) for d in challenger.training["holdout_days"]]
    frame, missing = features.read_many(holdout)
    if frame.empty:
        raise EvaluationError(
            f"no cleaned rows on the holdout days {holdout[0]}..{holdout[-1]} of version {version}"
        )
    y = frame[LABEL_COLUMN].to_numpy(dtype=np.float64)
    scores = {"challenger": predict_frame(challenger.module, challenger.preprocessor, frame)}
    members = {"challenger": predict_members(challenger.module, challenger.preprocessor, frame)}
    report: dict[str, Any] = {
        "version": version,
        "holdout_days": [d.isoformat() for d in holdout],
        "holdout_days_missing": [d.isoformat() for d in missing],
        "days_left_out": challenger.training.get("days_left_out", {}),
        "rows": len(frame),
        "challenger": metrics.evaluate(y, scores["challenger"], challenger.threshold),
        "prior_baseline": metrics.prior_baseline(y, challenger.training["prior"]),
        "champion": registry.champion(),
        "champion_metrics": None,
        "champion_error": None,
        "out_of_vocabulary": challenger.preprocessor.oov_counts(frame),
    }
    champion = report["champion"]
    if champion and champion != version:
        try:
            loaded = registry.load(champion)
            scores["champion"] = predict_frame(loaded.module, loaded.preprocessor, frame)
            members["champion"] = predict_members(loaded.module, loaded.preprocessor, frame)
            report["champion_metrics"] = metrics.evaluate(y, scores["champion"], loaded.threshold)
        except ModelVersionError as err:
            report["champion_error"] = str(err)
    pngs = plots(y, scores)
    folder = registry.path(version)
    kept = pd.DataFrame(
        {
            "y": y,
            "challenger": scores["challenger"].astype(np.float64),
            "champion": scores["champion"].astype(np.float64) if "champion" in scores else np.nan,
            **{c: frame[c].astype(str).to_numpy() for c in slice_columns if c in frame.columns},
            **{  # each ensemble member's own scores: the gate's measure of retraining noise
                column: values[:, j].astype(np.float64)
                for model, values in members.items()
                for j, column in enumerate(members_columns(model, values.shape[1]))
            },
        }
    )
    write_parquet_atomic(kept, folder / SCORES_FILE)
    for name, png in pngs.items():
        (folder / f"{name}.png").write_bytes(png)
    path = registry.attach(version, "evaluation.json", report)
    report["report_path"] = str(path)
    return Evaluation(report, pngs, path)
