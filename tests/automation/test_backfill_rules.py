"""A backfill's rules, in one process: a bad day fails the run naming the day and the file while
the good days are written, and rerunning the range after the fix completes it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dagster import materialize

from assets.partitions import RANGE_END_TAG as ASSET_PARTITION_RANGE_END_TAG
from assets.partitions import RANGE_START_TAG as ASSET_PARTITION_RANGE_START_TAG
from tests.helpers import CHURN_TASK, flywheel_resources, graph_assets, make_churn_frame

GRAPH = graph_assets()
raw_data, cleaned_features = GRAPH["raw_data"], GRAPH["cleaned_features"]

DAYS = [dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(4)]


def fill(home: Path, task: Path, asset, first: dt.date, last: dt.date):
    """One run of ``asset`` over first..last, as a single-run backfill does."""
    return materialize(
        [raw_data, cleaned_features],
        selection=[asset.key],
        resources=flywheel_resources(home, task),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
        },
        raise_on_error=False,
    )


def test_bad_day_fails_named_good_days_done_rerun_completes(churn_task: Path, flywheel_env: Path):
    assert fill(flywheel_env, churn_task, raw_data, DAYS[0], DAYS[-1]).success
    bad = flywheel_env / "raw_data" / f"{DAYS[2]}.parquet"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 2])  # a truncated file

    result = fill(flywheel_env, churn_task, cleaned_features, DAYS[0], DAYS[-1])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.to_string()
    # The bad day, and the day after it (whose lagged rates read it), each named with the file.
    assert f"cleaned_features failed for 2 of 4 day(s): {DAYS[2]}: " in message
    assert f"{DAYS[2]}: partition {DAYS[2]}: cannot read {bad}" in message
    assert f"{DAYS[3]}: partition {DAYS[3]}: cannot read its raw_data history" in message
    features = flywheel_env / "cleaned_features"
    done = sorted(p.name for p in features.glob("????-??-??.parquet"))
    assert done == [f"{d}.parquet" for d in DAYS[:2]]

    bad.write_bytes(good_bytes)  # the fix
    before = {d: pd.read_parquet(features / f"{d}.parquet") for d in DAYS[:2]}
    rerun = fill(flywheel_env, churn_task, cleaned_features, DAYS[0], DAYS[-1])
    assert rerun.success
    assert len(list(features.glob("????-??-??.parquet"))) == 4
    for day, frame in before.items():  # the rerun rewrote the good days with the same rows
        pd.testing.assert_frame_equal(pd.read_parquet(features / f"{day}.parquet"), frame)


@pytest.mark.slow
def test_dg_launch_runs_a_partition_range_as_one_run(churn_task: Path, tmp_path: Path):
    """The command line the README gives: `dg launch --assets ... --partition-range A...B`."""
    from dagster import DagsterInstance

    root = Path(__file__).resolve().parents[2]
    bin_dir = Path(sys.executable).parent
    dagster_home, home = tmp_path / "dagster_home", tmp_path / "fw"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FLYWHEEL_HOME": str(home),
           "FLYWHEEL_TASK": str(churn_task), "PATH": path}  # fmt: skip
    span = f"{DAYS[0]}...{DAYS[-1]}"
    proc = subprocess.run(
        [str(bin_dir / "dg"), "launch", "--assets", "raw_data,cleaned_features",
         "--partition-range", span], cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "BetaWarning" not in proc.stderr and "PreviewWarning" not in proc.stderr
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status.value == "SUCCESS"
        assert run.tags[ASSET_PARTITION_RANGE_START_TAG] == DAYS[0].isoformat()
    assert sorted(p.name for p in (home / "cleaned_features").glob("????-??-??.parquet")) == [
        f"{d}.parquet" for d in DAYS
    ]


def test_csv_not_in_its_encoding_fails_raw_data_naming_the_file(tmp_path: Path, flywheel_env):
    """A Latin-1 CSV read as UTF-8 (the default) fails raw_data itself for each day it holds,
    naming the day, the file, the column and the line: nothing is stored for a later step to
    trip over. Declared, it reads."""
    frame = make_churn_frame(days=2, rows_per_day=20)
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.loc[3, "region"] = "Jos\u00e9"
    (tmp_path / "task" / "data").mkdir(parents=True)
    csv = tmp_path / "task" / "data" / "latin.csv"
    frame.to_csv(csv, index=False, encoding="latin-1")
    task = tmp_path / "task" / "churn.yaml"
    task.write_text(yaml.safe_dump(CHURN_TASK))

    result = fill(flywheel_env, task, raw_data, DAYS[0], DAYS[1])
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "raw_data"
    message = failure.step_failure_data.error.to_string()
    assert (
        f"raw_data failed for 2 of 2 day(s): {DAYS[0]}: partition {DAYS[0]}: file {csv}" in message
    )
    assert "is not valid utf-8" in message and f"{DAYS[1]}: partition {DAYS[1]}" in message
    assert "column 'region', line 5, byte offset" in message and "'source.encoding'" in message
    assert not list((flywheel_env / "raw_data").glob("????-??-??.parquet"))

    declared = {**CHURN_TASK, "source": {**CHURN_TASK["source"], "encoding": "latin-1"}}
    task.write_text(yaml.safe_dump(declared))
    assert fill(flywheel_env, task, raw_data, DAYS[0], DAYS[1]).success
    stored = pd.read_parquet(flywheel_env / "raw_data" / f"{DAYS[0]}.parquet")
    assert "Jos\u00e9" in stored["region"].tolist()
