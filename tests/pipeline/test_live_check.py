"""The live check's parts on hand-made rows (with real bootstraps: test_live.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pipeline.gate import GatePolicy
from pipeline.live import MIN_CLASS_LABELS
from pipeline.live_check import judge_live, newest_labelled

DAY = dt.date(2025, 3, 1)


def _day(path, version, labels):
    frame = pd.DataFrame({"model_version": version, "label": labels, "score": 0.5})
    frame.to_parquet(path, index=False)
    return path


def test_the_newest_days_with_labels_for_the_version_are_taken(tmp_path):
    files = {
        DAY: _day(tmp_path / "a.parquet", "v1", [1.0, 0.0]),
        DAY + dt.timedelta(days=1): _day(tmp_path / "b.parquet", "v2", [1.0]),  # another version
        DAY + dt.timedelta(days=2): _day(tmp_path / "c.parquet", "v1", [np.nan]),  # no label yet
        DAY + dt.timedelta(days=3): _day(tmp_path / "d.parquet", "v1", [0.0, np.nan]),
    }
    frame, days = newest_labelled(files, "v1", max_days=2)
    assert days == ["2025-03-01", "2025-03-04"]
    assert sorted(frame["label"].tolist()) == [0.0, 0.0, 1.0]
    _, one = newest_labelled(files, "v1", max_days=1)
    assert one == ["2025-03-04"]


def test_too_few_labels_of_a_class_pass_and_say_so(tmp_path):
    live = pd.DataFrame({"label": [1.0] * 50 + [0.0] * (MIN_CLASS_LABELS - 1), "score": 0.5})
    verdict = judge_live(live, ["2025-03-01"], "v1", tmp_path, GatePolicy())
    assert verdict.passed and verdict.comparison is None
    assert f"fewer than {MIN_CLASS_LABELS} of a class" in verdict.reason


def test_a_version_without_holdout_scores_passes_and_says_so(tmp_path):
    live = pd.DataFrame({"label": [1.0, 0.0] * MIN_CLASS_LABELS, "score": 0.5})
    verdict = judge_live(live, ["2025-03-01"], "v1", tmp_path, GatePolicy())
    assert verdict.passed and "no holdout_scores.parquet" in verdict.reason
