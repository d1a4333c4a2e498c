"""`make demo`'s script, run as a user runs it: a real process, a real Dagster instance."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_the_whole_graph_and_then_reuses_it(tmp_path: Path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "FLYWHEEL_HOME": str(tmp_path / "fw")}
    env.pop("FLYWHEEL_TASK", None)

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, "scripts/demo.py"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    first = run()
    assert "materializing raw_data and cleaned_features" in first
    assert "roc_auc" in first and "gate            no champion yet" in first
    assert "(29 days) kept unlabelled" in first
    assert (
        len(list((tmp_path / "fw" / "cleaned_features").glob("*[0-9].parquet"))) == 133
    )  # 37 days for the lagged rates (7, ending 30 before), 60 + 7 labelled, 29 not yet
    runs = list((dagster_home / "history" / "runs").glob("*")) or list(dagster_home.rglob("*.db"))
    assert runs, "the runs were recorded in DAGSTER_HOME"
    # Every asset has a materialization, user_feedback (empty on a fresh machine) included, so a
    # click on Materialize for trained_model meets no "upstream not materialized" warning.
    assert "materializing user_feedback, trained_model" in first
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for name in ("raw_data", "cleaned_features", "user_feedback", "trained_model",
                     "evaluation_report", "deployed_model"):  # fmt: skip
            assert instance.get_latest_materialization_event(AssetKey(name)) is not None, name

    second = run()
    assert "reusing raw_data and cleaned_features" in second
    assert "reusing champion" in second
