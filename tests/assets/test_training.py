"""trained_model with 2 processes: a torchrun job started through Dagster Pipes, whose logs and
metadata arrive in the Dagster run (dagster.materialize, in process, a real ephemeral instance)."""

import datetime as dt
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from pipeline.home import FlywheelHome
from tests.helpers import flights_home, flywheel_resources, graph_assets

GRAPH = graph_assets()
END = dt.date(2025, 5, 20)
TINY = {"epochs": 2, "window_days": 5, "holdout_days": 2, "batch_size": 512,
        "hidden_sizes": [16], "members": 1, "end_date": END.isoformat()}  # fmt: skip


def _train(home: Path, instance: DagsterInstance, **config):
    return materialize(
        [GRAPH["trained_model"], GRAPH["evaluation_report"]],
        resources=flywheel_resources(home),
        run_config={"ops": {"trained_model": {"config": {**TINY, **config}}}},
        instance=instance,
        raise_on_error=False,
    )


def _metadata(result) -> dict:
    (event,) = result.asset_materializations_for_node("trained_model")
    return {k: v.value for k, v in event.metadata.items()}


@pytest.mark.slow
def test_two_devices_train_through_pipes_and_report_to_the_run(flywheel_env: Path):
    flights_home(flywheel_env, END, 7)
    instance = DagsterInstance.ephemeral()
    two = _train(flywheel_env, instance, accelerator="cpu", devices=2)
    assert two.success
    md = _metadata(two)
    assert md["world_size"] == 2 and md["hyperparameters"]["devices"] == 2
    version = two.output_for_node("trained_model")["version"]
    assert md["version"] == version and Path(md["path"]).is_dir()
    assert two.output_for_node("evaluation_report")["version"] == version  # downstream reads it
    logs = [e.user_message for e in instance.all_logs(two.run_id)]
    assert any("training with 2 DDP processes" in m for m in logs)  # the asset, in the run
    assert any(m.startswith("epoch 0: val_loss") for m in logs)  # rank 0, through Pipes
    assert any(f"saved {version}, trained by 2 DDP processes" in m for m in logs)
    assert any(m.startswith("[pipes]") for m in logs)  # the session's own lines
    request = flywheel_env / "scratch" / two.run_id / "train_request.json"
    assert request.is_file()

    one = _train(flywheel_env, instance)  # in-process, as before: the same metadata keys
    assert one.success
    md_one = _metadata(one)
    assert md_one["world_size"] == 1 and set(md_one) == set(md)
    assert not (flywheel_env / "scratch" / one.run_id / "train_request.json").exists()


@pytest.mark.slow
def test_a_failing_torchrun_job_fails_the_step_with_the_reason_in_the_run(flywheel_env: Path):
    flights_home(flywheel_env, END, 3)
    instance = DagsterInstance.ephemeral()
    result = _train(flywheel_env, instance, devices=2, end_date="2024-01-10")  # no rows then
    assert not result.success
    failure = result.failure_data_for_node("trained_model").error
    assert "External execution process failed" in failure.cause.message  # torchrun's exit code
    # Rank 0's own exception, reported through Pipes as structured error data in the run.
    closing = "[pipes] external process pipes closed with exception"
    (closed,) = [e for e in instance.all_logs(result.run_id) if e.user_message == closing]
    error = closed.dagster_event.engine_event_data.error
    assert "TrainingError" in error.cls_name and "no labelled cleaned rows" in error.message
    assert not list(FlywheelHome.at(flywheel_env).registry().versions())  # nothing saved
