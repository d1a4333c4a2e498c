"""The asset checks through ``dagster.materialize``: bad input, tried on purpose.

A module fixture fills three weeks of a user's own files (the churn task with ``checks:`` and
``key:``) and trains a champion; each test copies that home, breaks the source on purpose, and
runs raw_data, cleaned_features and their checks as one single-run backfill over three days.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, materialize

from assets.checks import LOGGED_DAYS, _report
from pipeline.checks.results import DayVerdict, Outcome
from pipeline.checks.verdicts import VerdictStore
from pipeline.home import FlywheelHome
from pipeline.model.registry import ModelRegistry
from resources import FlywheelStorage, JsonIOManager, TaskSource
from tests.helpers import (
    CHURN_CHECKS,
    CHURN_START,
    graph_assets,
    make_churn_frame,
    write_churn_task,
)

GRAPH = graph_assets()
DATA_ASSETS = [GRAPH[n] for n in ("raw_data", "cleaned_features", "raw_data_expectations",
                                  "cleaned_features_expectations")]  # fmt: skip
TRAIN_ASSETS = [GRAPH[n] for n in ("trained_model", "evaluation_report", "deployed_model")]
LAST = CHURN_START + dt.timedelta(days=20)
RUN_DAYS = [LAST - dt.timedelta(days=i) for i in (2, 1, 0)]
BAD_DAY = RUN_DAYS[1]
TRAIN_CONFIG = {
    "epochs": 2, "window_days": 8, "holdout_days": 3, "batch_size": 256, "hidden_sizes": [8],
    "patience": 1,
}  # fmt: skip


def _run(home: Path, task: Path, assets, days, config=None, selection=None):
    tags, partition_key = {}, None
    if days and len(days) == 1:  # one partition: the checks return AssetCheckResults
        partition_key = days[0].isoformat()
    elif days:  # a single-run backfill: one evaluation per day and check
        tags = {
            "dagster/asset_partition_range_start": days[0].isoformat(),
            "dagster/asset_partition_range_end": days[-1].isoformat(),
        }
    return materialize(
        assets,
        selection=selection,
        instance=DagsterInstance.ephemeral(),
        resources={
            "storage": FlywheelStorage(home=str(home)),
            "task": TaskSource(task_file=str(task)),
            "json_io_manager": JsonIOManager(home=str(home)),
        },
        tags=tags,
        partition_key=partition_key,
        run_config=config,
        raise_on_error=False,
    )


def _train_config(**extra):
    """Small training; the 3 holdout days hold 360 rows, so the gate's minimum is lowered."""
    return {
        "ops": {
            "trained_model": {"config": {**TRAIN_CONFIG, **extra}},
            "deployed_model": {"config": {"min_holdout_rows": 100}},
        }
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    """Three clean weeks of raw_data and cleaned_features, checked, and a champion."""
    root = tmp_path_factory.mktemp("seeded")
    task = write_churn_task(root, **CHURN_CHECKS)
    all_days = [CHURN_START + dt.timedelta(days=i) for i in range(21)]
    assert _run(root / "home", task, DATA_ASSETS, all_days).success
    result = _run(root / "home", task, TRAIN_ASSETS, None, _train_config())
    assert result.success
    assert ModelRegistry(root / "home" / "models").champion() is not None  # the checks' champion
    return root


@pytest.fixture
def env(seeded: Path, tmp_path: Path):
    """A private copy of the seeded task folder and FLYWHEEL_HOME."""
    shutil.copytree(seeded, tmp_path, dirs_exist_ok=True)
    home, task = tmp_path / "home", tmp_path / "task" / "churn.yaml"
    return home, task, ModelRegistry(home / "models").champion()


def _week_file(task: Path) -> Path:
    return task.parent / "data" / "week-2.parquet"


def _edit_bad_day(task: Path, edit) -> None:
    path = _week_file(task)
    frame = pd.read_parquet(path)
    on_day = frame.index[frame["event_time"].dt.date == BAD_DAY]
    frame = edit(frame, on_day)
    frame.to_parquet(path, index=False)


def _source_rows(task: Path) -> int:
    return sum(len(pd.read_parquet(p)) for p in (task.parent / "data").glob("*.parquet"))


def _rows_on_disk(home: Path) -> int:
    raw = home / "raw_data"
    total = 0
    for day in range(21):
        path = raw / f"{(CHURN_START + dt.timedelta(days=day)).isoformat()}.parquet"
        total += len(pd.read_parquet(path))
    unassigned = FlywheelHome.at(home).unassigned_file
    return total + (len(pd.read_parquet(unassigned)) if unassigned.is_file() else 0)


def _evaluations(result, name: str) -> dict[str, object]:
    return {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == name}


def _set(frame, rows, column, value):
    frame[column] = frame[column].astype(object) if isinstance(value, str) else frame[column]
    frame.loc[rows, column] = value
    return frame


RAW, FEATURES = "raw_data_expectations", "cleaned_features_expectations"
CASES = {
    # name: (edit of the bad day's rows, check, rule, column, count, blocking)
    "null timestamps": (
        lambda f, r: _set(f, r[:2], "event_time", pd.NaT),
        RAW, "every source row has a timestamp", "event_time", 2, False,
    ),
    "out-of-range numbers": (
        lambda f, r: _set(f, r[:3], "usage", 9999.0),
        RAW, "'usage' within [0, 500]", "usage", 3, False,
    ),
    "infinite numbers": (
        lambda f, r: _set(f, r[:2], "usage", np.inf),
        RAW, "'usage' within [0, 500]", "usage", 2, False,
    ),
    "a category never seen before": (
        lambda f, r: _set(f, r[:4], "plan", "platinum"),
        FEATURES, "'plan' within the champion's vocabulary", "plan", 4, False,
    ),
    "a required column missing": (
        lambda f, r: f.drop(columns=["region"]),
        RAW, "column 'region' exists", "region", 120, True,
    ),
    "a column renamed": (
        lambda f, r: f.rename(columns={"usage": "usage_minutes"}),
        RAW, "column 'usage' exists", "usage", 120, True,
    ),
    "numbers arriving as strings": (
        lambda f, r: f.assign(usage=f["usage"].astype(str)),
        RAW, "'usage' holds numbers", "usage", 120, True,
    ),
    "duplicated rows": (
        lambda f, r: pd.concat([f, f.loc[r[:3]]], ignore_index=True),
        RAW, "key ['customer_id'] has no duplicates", "customer_id", 6, False,
    ),
    "an empty day": (
        lambda f, r: f.drop(index=r),
        RAW, "row count is not zero", None, None, False,
    ),
    "a label column of unexpected values": (
        lambda f, r: _set(f, r[:20], "churned", "MAYBE"),
        FEATURES, "quarantined share at most 5%", "quarantine_reason", 20, True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_or_warns_naming_day_column_and_count(env, case):
    home, task, champion = env
    edit, check, rule, column, count, blocking = CASES[case]
    _edit_bad_day(task, edit)
    result = _run(home, task, DATA_ASSETS, RUN_DAYS)

    assert result.success is not blocking
    evaluation = _evaluations(result, check)[BAD_DAY.isoformat()]
    assert not evaluation.passed
    severity = AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN
    assert evaluation.severity == severity
    found = [e for e in evaluation.metadata["expectations"].value if e["rule"].startswith(rule)]
    assert found and not found[0]["success"]
    assert (found[0]["column"], found[0]["unexpected_count"]) == (column, count) or count is None
    if count and "exists" not in rule:  # a missing column has no values to show
        assert 0 < len(found[0]["sample_unexpected"]) <= min(count, 20)
    verdict = json.loads((home / "checks" / evaluation.asset_key.path[-1]
                          / f"{BAD_DAY.isoformat()}.json").read_text())  # fmt: skip
    assert verdict["blocking_failed"] is blocking
    assert ModelRegistry(home / "models").champion() == champion
    assert _rows_on_disk(home) == _source_rows(task)


def test_unparseable_timestamps_are_kept_and_reported(env):
    home, task, champion = env
    bad = make_churn_frame(days=1, rows_per_day=3)
    bad["event_time"] = ["not a time", "2025-13-45T00:00:00", ""]
    bad.to_parquet(task.parent / "data" / "late.parquet", index=False)
    result = _run(home, task, DATA_ASSETS, RUN_DAYS)
    assert result.success
    for evaluation in _evaluations(
        result, "raw_data_expectations"
    ).values():  # any day might lack them
        assert not evaluation.passed
    kept = pd.read_parquet(FlywheelHome.at(home).unassigned_file)
    assert sorted(kept["event_time"]) == sorted(bad["event_time"])
    assert _rows_on_disk(home) == _source_rows(task)
    assert ModelRegistry(home / "models").champion() == champion


def test_timestamp_from_another_day_in_a_raw_partition(env):
    """A raw partition holding another day's row (as a buggy source would write it)."""
    home, task, _ = env
    path = home / "raw_data" / f"{BAD_DAY.isoformat()}.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "event_time"] += pd.Timedelta(days=3)
    frame.to_parquet(path, index=False)
    selection = AssetSelection.checks_for_assets("raw_data") | AssetSelection.assets(
        "cleaned_features"
    )
    result = _run(home, task, DATA_ASSETS, [BAD_DAY], selection=selection)
    assert result.success
    (evaluation,) = _evaluations(result, "raw_data_expectations").values()
    assert evaluation.partition == BAD_DAY.isoformat() and not evaluation.passed
    found = {e["rule"]: e for e in evaluation.metadata["expectations"].value}
    assert found["timestamp 'event_time' parses and is on the day"]["unexpected_count"] == 1
    quarantine = pd.read_parquet(home / "cleaned_features" / f"{BAD_DAY}.quarantine.parquet")
    assert list(quarantine["quarantine_reason"]) == [f"timestamp: 'event_time' is not on {BAD_DAY}"]


def test_corrupt_parquet_names_the_file(env):
    home, task, champion = env
    (task.parent / "data" / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    result = _run(home, task, DATA_ASSETS, RUN_DAYS)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "broken.parquet" in str(failure.step_failure_data.error)
    assert ModelRegistry(home / "models").champion() == champion


def test_training_leaves_out_failed_days_and_reports_them(env):
    home, task, _ = env
    path = _week_file(task)  # BAD_DAY's rows move to a file of their own, without a column
    frame = pd.read_parquet(path)
    on_day = frame["event_time"].dt.date == BAD_DAY
    frame[~on_day].to_parquet(path, index=False)
    frame[on_day].drop(columns=["region"]).to_parquet(path.with_name("bad.parquet"), index=False)
    blocked = _run(home, task, DATA_ASSETS, RUN_DAYS)
    assert not blocked.success
    assert [
        d for d, e in _evaluations(blocked, "raw_data_expectations").items() if not e.passed
    ] == [BAD_DAY.isoformat()]

    result = _run(home, task, TRAIN_ASSETS, None, _train_config(min_train_days=8))
    assert result.success
    report = result.output_for_node("evaluation_report")
    assert list(report["days_left_out"]) == [BAD_DAY.isoformat()]
    assert "column 'region' exists" in report["days_left_out"][BAD_DAY.isoformat()]
    assert BAD_DAY.isoformat() not in report["holdout_days"]

    champion = ModelRegistry(home / "models").champion()
    end = (LAST + dt.timedelta(days=2)).isoformat()  # BAD_DAY now falls in the training days
    too_few = _run(home, task, TRAIN_ASSETS, None, _train_config(min_train_days=8, end_date=end))
    assert not too_few.success
    failure = next(e for e in too_few.all_events if e.event_type_value == "STEP_FAILURE")
    assert "min_train_days 8" in str(failure.step_failure_data.error)
    assert BAD_DAY.isoformat() in str(failure.step_failure_data.error)
    assert ModelRegistry(home / "models").champion() == champion


def test_the_run_log_names_the_first_failed_days_and_counts_the_rest(tmp_path):
    """A long range failing on many days logs one bounded line; the UI has every day."""
    (spec,) = GRAPH["raw_data_expectations"].check_specs
    logged: list[str] = []
    context = SimpleNamespace(
        check_specs=[spec], has_partition_key=True, log=SimpleNamespace(warning=logged.append)
    )
    days = [CHURN_START + dt.timedelta(days=i) for i in range(LOGGED_DAYS + 2)]
    failed = Outcome(rule="'usage' within [0, 500]", expectation="between", severity="WARN",
                     success=False, column="usage", observed_value=0.5, element_count=2,
                     unexpected_count=1, sample_unexpected=[9999.0])  # fmt: skip
    verdicts = [DayVerdict("raw_data", day, 2, [failed]) for day in days]
    results = list(_report(context, verdicts, VerdictStore(tmp_path)))
    assert [r.passed for r in results] == [False] * len(days)
    (line,) = logged
    assert f"failed on {len(days)} day(s)" in line and "... and 2 more day(s)" in line
    assert days[LOGGED_DAYS - 1].isoformat() in line and days[-1].isoformat() not in line


def test_label_rate_and_max_psi_are_float_metadata_on_every_day(env):
    from dagster import FloatMetadataValue

    home, task, _ = env
    result = _run(home, task, DATA_ASSETS, RUN_DAYS)
    assert result.success
    evaluations = _evaluations(result, FEATURES)
    assert sorted(evaluations) == [d.isoformat() for d in RUN_DAYS]
    for day, evaluation in evaluations.items():
        for key in ("label_rate", "max_psi"):
            assert isinstance(evaluation.metadata[key], FloatMetadataValue), (day, key)
        verdict = json.loads((home / "checks" / "cleaned_features" / f"{day}.json").read_text())
        assert 0 < evaluation.metadata["label_rate"].value < 1
        assert evaluation.metadata["label_rate"].value == pytest.approx(
            verdict["metrics"]["label_rate"]
        )
        rules = {r["rule"] for r in verdict["results"]}
        assert any(r.startswith("label holds both classes") for r in rules)
