"""The evaluation step: a challenger and the champion scored on the challenger's holdout rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.storage import PartitionStore, read_parquet, write_parquet_atomic
from pipeline.gate import SCORES_FILE, members_columns
from pipeline.labelled import HOLDOUT_FILE, LABEL_SOURCE
from pipeline.model.registry import ModelRegistry, ModelVersionError
from pipeline.task import LABEL_COLUMN


class EvaluationError(RuntimeError):
    """The evaluation could not run; the message says why."""


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
    kept_rows = registry.path(version) / HOLDOUT_FILE
    if kept_rows.is_file():  # the rows training chose: batch and feedback
        frame = read_parquet(kept_rows)
        missing = [d for d in holdout if not features.exists(d)]
    else:  # a version saved before holdout.parquet: its holdout days' batch rows
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
        "holdout_rows": by_source(frame),
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


def by_source(frame: pd.DataFrame) -> dict[str, int]:
    """Holdout rows by where their label came from: the batch source or feedback."""
    if LABEL_SOURCE not in frame.columns:
        return {"batch": len(frame), "feedback": 0}
    counts = frame[LABEL_SOURCE].value_counts()
    return {name: int(counts.get(name, 0)) for name in ("batch", "feedback")}
