"""Whether the world has moved away from the champion: its live ROC-AUC over the newest days with
enough labels against its holdout ROC-AUC, with a bootstrap interval as the gate computes them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.storage import read_parquet
from pipeline.gate import SCORES_FILE, GatePolicy
from pipeline.live import MIN_CLASS_LABELS
from pipeline.model.comparison import Comparison, compare_independent
from pipeline.task import LABEL_COLUMN

LIVE_DAYS = 7  # the newest days (with labels for the champion) the check looks at


@dataclass(frozen=True)
class LiveVerdict:
    passed: bool
    reason: str
    days: list[str]
    labelled: int
    comparison: Comparison | None = None


def newest_labelled(files: dict[dt.date, Path], version: str, max_days: int = LIVE_DAYS):
    """The champion's labelled live rows of the newest ``max_days`` days that have any."""
    parts, days = [], []
    for day in sorted(files, reverse=True):
        rows = read_parquet(files[day])
        rows = rows[(rows["model_version"] == version) & rows[LABEL_COLUMN].notna()]
        if len(rows):
            parts.append(rows)
            days.append(day.isoformat())
        if len(days) == max_days:
            break
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame, sorted(days)


def judge_live(
    live: pd.DataFrame, days: list[str], version: str, version_dir: Path, policy: GatePolicy
) -> LiveVerdict:
    """Fails (the check warns) when the live ROC-AUC is significantly below the holdout's: the
    upper bound of (live - holdout) below 0."""
    y = live[LABEL_COLUMN].to_numpy(dtype=np.float64) if len(live) else np.zeros(0)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if min(pos, neg) < MIN_CLASS_LABELS:
        why = (f"{len(y)} labelled live predictions of {version} ({pos} positive, {neg} negative)"
               f": fewer than {MIN_CLASS_LABELS} of a class, no live ROC-AUC yet")  # fmt: skip
        return LiveVerdict(True, why, days, len(y))
    scores = version_dir / SCORES_FILE
    if not scores.is_file():
        return LiveVerdict(True, f"{version} has no {SCORES_FILE}: no holdout to compare", days,
                           len(y))  # fmt: skip
    hold = read_parquet(scores)
    c = compare_independent(y, live["score"].to_numpy(dtype=np.float64),
                            hold["y"].to_numpy(dtype=np.float64),
                            hold["challenger"].to_numpy(dtype=np.float64), policy)  # fmt: skip
    figures = f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] ({c.confidence:.0%})"
    if c.ci_high < 0.0:
        why = f"live ROC-AUC of {version} is significantly below its holdout's: {figures}"
        return LiveVerdict(False, why, days, len(y), c)
    why = f"live ROC-AUC of {version} is not significantly below its holdout's: {figures}"
    return LiveVerdict(True, why, days, len(y), c)
