"""One function per step of the model's life cycle; each asset calls exactly one of these."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.model import metrics
from pipeline.checks.suites import unassigned_path
from pipeline.data.cleaning import clean_day
from pipeline.model.registry import ModelRegistry, ModelVersionError
from pipeline.serving.app import serving_document
from pipeline.data.sources import Source
from pipeline.data.storage import CachedReader, PartitionStore, write_parquet_atomic
from pipeline.task import LABEL_COLUMN, TaskSpec
from pipeline.model.training import TrainingError, TrainParams, predict_frame, train_model


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


def md_text(value: Any) -> str:
    """``value`` as text that fits in one Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN: empty
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    return md_text(value)


def preview(frame: pd.DataFrame, rows: int = 5) -> str:
    """The first ``rows`` rows as a Markdown table (a backfill writes one per day, so it is
    built here: ``DataFrame.to_markdown`` costs twice as much)."""
    if not len(frame):
        return "(no rows)"
    columns = [str(c) for c in frame.columns]
    cells = [[_md_cell(v) for v in frame[c].iloc[:rows].tolist()] for c in frame.columns]
    lines = [
        "| " + " | ".join(_md_cell(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)),
    ]
    return "\n".join(lines)


def ingest_day(source: Source, store: PartitionStore, day: dt.date) -> dict[str, Any]:
    """Reads the day's rows from the source and replaces the ``raw_data`` partition."""
    frame = source.read_day(day)
    store.write(day, frame)
    return {"day": day, "rows": len(frame), "columns": list(frame.columns), "frame": frame}


def keep_unassigned(source: Source, store: PartitionStore) -> dict[str, Any]:
    """Replaces raw_data's file of the source rows that belong to no day (their timestamp is
    missing or does not parse), so that no source row is lost; removes it when there are none."""
    frame = source.read_unassigned()
    path = unassigned_path(store)
    if frame.empty:
        path.unlink(missing_ok=True)
    else:
        write_parquet_atomic(frame, path)
    return {"rows": len(frame), "path": str(path)}


def build_features_day(
    spec: TaskSpec,
    raw: PartitionStore,
    features: PartitionStore,
    day: dt.date,
    reader: CachedReader | None = None,
) -> dict[str, Any]:
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
    lag_days = (
        days_ending(day - dt.timedelta(days=1), spec.max_lag_days) if spec.max_lag_days else []
    )
    try:
        history, missing_history = reader.read_many(lag_days)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"partition {day}: cannot read its raw_data history {lag_days[0]}..{lag_days[-1]}"
            f" under {raw.root}: {err}"
        ) from err
    result = clean_day(today, day, spec, history)
    features.write(day, result.features, result.quarantine)
    return {
        "day": day,
        "rows": len(result.features),
        "quarantined": len(result.quarantine),
        "quarantine_reasons": result.quarantine_reasons,
        "positive_rate": float(result.features[LABEL_COLUMN].mean())
        if len(result.features)
        else None,
        "history_days_missing": [d.isoformat() for d in missing_history],
        "frame": result.features,
        "quarantine_path": str(features.quarantine_path(day)),
    }


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
) -> dict[str, Any]:
    """Trains a challenger on the window before the holdout days and saves it as a version.

    ``left_out`` maps days (ISO dates) whose latest blocking data check failed to why: they are
    neither trained nor evaluated on. Fewer than ``min_train_days`` usable days is an error.

    With ``raw`` (the raw_data store) the version also gets ``serving.json``: the task and the
    lagged-rate tables as of the day after its holdout, all that serving needs besides the
    weights. ``extra`` (cleaned feedback examples) joins training with weight ``extra_weight``.
    """
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
        documents = {"serving.json": serving_document(spec, raw, as_of)}
    version = registry.save_version(outcome.module, outcome.preprocessor, training, documents)
    return {"version": version, "path": str(registry.path(version)), **training}


def evaluate_version(
    features: PartitionStore, registry: ModelRegistry, version: str
) -> dict[str, Any]:
    """Scores the challenger and the current champion on the challenger's holdout days."""
    challenger = registry.load(version)
    holdout = [dt.date.fromisoformat(d) for d in challenger.training["holdout_days"]]
    frame, missing = features.read_many(holdout)
    if frame.empty:
        raise EvaluationError(
            f"no cleaned rows on the holdout days {holdout[0]}..{holdout[-1]} of version {version}"
        )
    y = frame[LABEL_COLUMN].to_numpy(dtype=np.float64)
    scores = {"challenger": predict_frame(challenger.module, challenger.preprocessor, frame)}
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
            report["champion_metrics"] = metrics.evaluate(y, scores["champion"], loaded.threshold)
        except ModelVersionError as err:
            report["champion_error"] = str(err)
    plots = metrics.plots(y, scores)
    folder = registry.path(version)
    for name, png in plots.items():
        (folder / f"{name}.png").write_bytes(base64.b64decode(png))
    report["report_path"] = str(registry.attach(version, "evaluation.json", report))
    return {**report, "plots": plots}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(report: dict[str, Any], min_auc_gain: float = 0.0, force: bool = False) -> Decision:
    """The gate: promote when there is no champion, or the challenger's ROC-AUC is at least the
    champion's plus ``min_auc_gain`` and above the prior baseline; ``force`` overrides."""
    auc = report["challenger"]["roc_auc"]
    prior_auc = report["prior_baseline"]["roc_auc"]
    champion, champ = report["champion"], report["champion_metrics"]
    if force:
        return Decision(True, f"forced by run config (challenger ROC-AUC {auc:.4f})")
    if not auc > prior_auc:
        return Decision(False, f"challenger ROC-AUC {auc:.4f} is not above the prior {prior_auc}")
    if champion is None or champion == report["version"]:
        return Decision(True, f"no champion yet; challenger ROC-AUC {auc:.4f} beats the prior")
    if report["champion_error"]:
        return Decision(
            False,
            f"champion {champion} cannot be loaded ({report['champion_error']}); it stays until"
            " you roll back or promote with force: true",
        )
    need = champ["roc_auc"] + min_auc_gain
    if auc >= need:
        return Decision(
            True,
            f"challenger ROC-AUC {auc:.4f} >= champion {champ['roc_auc']:.4f} + {min_auc_gain}",
        )
    return Decision(
        False,
        f"champion {champion} stays: challenger ROC-AUC {auc:.4f} < champion"
        f" {champ['roc_auc']:.4f} + {min_auc_gain}",
    )


def deploy(
    registry: ModelRegistry, report: dict[str, Any], min_auc_gain: float = 0.0, force: bool = False
) -> dict[str, Any]:
    """Applies the gate; on promotion replaces the champion pointer atomically."""
    decision = decide(report, min_auc_gain, force)
    version = report["version"]
    if decision.promote:
        registry.promote(version, reason=decision.reason, forced=force)
    return {
        "champion": registry.champion(),
        "challenger": version,
        "promoted": decision.promote,
        "forced": force and decision.promote,
        "reason": decision.reason,
    }
