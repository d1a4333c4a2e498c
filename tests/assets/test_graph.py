"""The five assets through dagster.materialize, all storage under tmp_path."""

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from assets.partitions import RANGE_END_TAG as ASSET_PARTITION_RANGE_END_TAG
from assets.partitions import RANGE_START_TAG as ASSET_PARTITION_RANGE_START_TAG
from pipeline.model.registry import ModelRegistry
from tests.helpers import flywheel_resources, graph_assets, make_churn_frame

pytestmark = pytest.mark.slow

GRAPH = graph_assets()
DATA = [GRAPH["raw_data"], GRAPH["cleaned_features"]]
MODEL = [GRAPH["trained_model"], GRAPH["evaluation_report"], GRAPH["deployed_model"]]


def fill(home: Path, task: Path | str, first: str, last: str, instance=None):
    """One run over the range, as a single-run backfill does."""
    return materialize(
        DATA,
        resources=flywheel_resources(home, task),
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        instance=instance,
        raise_on_error=False,
    )


GATE_KEYS = ("min_auc_gain", "force", "min_holdout_rows")


def train(home: Path, task: Path | str, instance=None, **config):
    """trained_model, evaluation_report and deployed_model; the churn task's 4 holdout days
    hold 480 rows, so the gate's minimum evidence is lowered unless a test sets it."""
    training = {"epochs": 3, "batch_size": 128, "window_days": 12, "holdout_days": 4}
    training.update({k: v for k, v in config.items() if k not in GATE_KEYS})
    deploy = {"min_holdout_rows": 200, **{k: v for k, v in config.items() if k in GATE_KEYS}}
    return materialize(
        MODEL,
        resources=flywheel_resources(home, task),
        run_config={
            "ops": {"trained_model": {"config": training}, "deployed_model": {"config": deploy}}
        },
        instance=instance,
        raise_on_error=False,
    )


def metadata(result, asset_key: str, partition: str | None = None) -> dict:
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key.to_user_string() == asset_key and mat.partition == partition:
            return {k: v.value for k, v in mat.metadata.items()}
    raise AssertionError(f"no materialization of {asset_key} {partition}")


def failure_text(result) -> str:
    """Everything a person sees about the failed step: the error chain and its metadata."""
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data
    return data.error.to_string() + str(data.user_failure_data)


def test_whole_graph_on_a_users_parquet_files(churn_task: Path, flywheel_env: Path):
    instance = DagsterInstance.ephemeral()
    result = fill(flywheel_env, churn_task, "2025-03-01", "2025-03-21", instance)
    assert result.success
    days = sorted(p.name for p in (flywheel_env / "cleaned_features").glob("2025-*[0-9].parquet"))
    assert len(days) == 21
    md = metadata(result, "cleaned_features", "2025-03-05")
    assert md["dagster/row_count"] == 120 and md["quarantined_rows"] == 0
    assert md["history_days_missing"] == []
    raw = pd.read_parquet(flywheel_env / "raw_data" / "2025-03-05.parquet")
    assert len(raw) == 120 and "support_calls_after" in raw.columns  # raw is unchanged
    clean = pd.read_parquet(flywheel_env / "cleaned_features" / "2025-03-05.parquet")
    assert "support_calls_after" not in clean.columns and "churned" not in clean.columns

    first = train(flywheel_env, churn_task, instance)
    assert first.success
    registry = ModelRegistry(flywheel_env / "models")
    v1 = first.output_for_node("trained_model")["version"]
    assert registry.champion() == v1
    training = registry.read_json(v1, "training.json")
    assert training["window"] == {
        "train_start": "2025-03-06", "train_end": "2025-03-17",
        "holdout_start": "2025-03-18", "holdout_end": "2025-03-21",
    }  # fmt: skip
    report = json.loads((registry.path(v1) / "evaluation.json").read_text())
    assert report["challenger"]["roc_auc"] > 0.7
    assert (registry.path(v1) / "roc.png").is_file()
    eval_md = metadata(first, "evaluation_report")
    assert "data:image/png;base64," in eval_md["plots"]
    assert "roc_auc" in eval_md["metrics"]
    deployed = metadata(first, "deployed_model")
    assert deployed["promoted"] is True and deployed["rule"] == "no_champion"
    assert deployed["auc_gain_ci_low"] > 0 and "paired bootstrap" in deployed["comparison"]
    assert report["gate"]["comparison"]["n"] == 480 and report["gate"]["promote"] is True

    # Too little evidence: with the default minimum of 500 holdout rows nothing is promoted.
    few = train(flywheel_env, churn_task, instance, min_holdout_rows=500)
    assert few.output_for_node("deployed_model")["promoted"] is False
    assert "fewer than min_holdout_rows 500" in few.output_for_node("deployed_model")["reason"]

    # The gate keeps the champion when the challenger is not better by the margin...
    kept = train(flywheel_env, churn_task, instance, min_auc_gain=1.0)
    assert kept.success
    decision = kept.output_for_node("deployed_model")
    assert decision["promoted"] is False and decision["champion"] == v1
    assert f"champion {v1} stays" in decision["reason"]
    # ...and evaluates the champion on the challenger's holdout days.
    v2 = kept.output_for_node("trained_model")["version"]
    assert registry.read_json(v2, "evaluation.json")["champion_metrics"]["roc_auc"] > 0.7

    forced = train(flywheel_env, churn_task, instance, min_auc_gain=1.0, force=True)
    v3 = forced.output_for_node("trained_model")["version"]
    assert registry.champion() == v3
    assert registry.champion_record()["forced"] is True
    assert len(registry.versions()) == 4 and registry.versions()[0] == v1
    assert registry.versions()[-2:] == [v2, v3]


def test_flights_graph_for_a_few_days(flywheel_env: Path):
    result = fill(flywheel_env, "", "2025-06-01", "2025-06-12")
    assert result.success
    clean = pd.read_parquet(flywheel_env / "cleaned_features" / "2025-06-12.parquet")
    assert len(clean) > 500
    assert 0.05 < clean["label"].mean() < 0.95  # a stormy June day in 2013 is mostly late
    # The rates of 06-12 count only labels matured by then (label_delay_days 30): the 7 days
    # ending 05-12, before the filled days, so there are none (they were of 06-05..06-11 before).
    assert clean["rate_origin_7d"].isna().all()
    for leak in ("dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"):
        assert leak not in clean.columns
    md = metadata(result, "raw_data", "2025-06-12")
    raw = pd.read_parquet(flywheel_env / "raw_data" / "2025-06-12.parquet")
    assert md["dagster/row_count"] == len(raw)
    assert "arr_delay" in md["columns"]

    trained = train(flywheel_env, "", window_days=8, holdout_days=2, epochs=2)
    assert trained.success, trained
    decision = trained.output_for_node("deployed_model")
    assert decision["promoted"] is True


def test_rewriting_a_partition_replaces_it_whole(churn_task: Path, flywheel_env: Path):
    assert fill(flywheel_env, churn_task, "2025-03-02", "2025-03-02").success
    path = flywheel_env / "raw_data" / "2025-03-02.parquet"
    assert len(pd.read_parquet(path)) == 120
    data = churn_task.parent / "data"
    for file in data.glob("*.parquet"):
        frame = pd.read_parquet(file)
        frame[frame["event_time"].dt.date != dt.date(2025, 3, 2)].to_parquet(file, index=False)
    pd.DataFrame(make_churn_frame(days=2).iloc[120:150]).to_parquet(data / "late.parquet")
    assert fill(flywheel_env, churn_task, "2025-03-02", "2025-03-02").success
    assert len(pd.read_parquet(path)) == 30


def test_empty_day_is_a_valid_partition(churn_task: Path, flywheel_env: Path):
    result = fill(flywheel_env, churn_task, "2025-05-01", "2025-05-01")
    assert result.success
    assert metadata(result, "raw_data", "2025-05-01")["empty"] is True
    md = metadata(result, "cleaned_features", "2025-05-01")
    assert md["dagster/row_count"] == 0 and md["empty"] is True


def test_bad_file_fails_naming_day_file_and_column(churn_task: Path, flywheel_env: Path):
    data = churn_task.parent / "data"
    make_churn_frame(days=1).drop(columns=["plan"]).to_parquet(data / "broken.parquet")
    result = fill(flywheel_env, churn_task, "2025-03-01", "2025-03-02")
    assert not result.success
    message = failure_text(result)
    assert "2025-03-01" in message and "broken.parquet" in message and "'plan'" in message


def test_training_on_zero_rows_fails_and_champion_stays(churn_task: Path, flywheel_env: Path):
    assert fill(flywheel_env, churn_task, "2025-03-01", "2025-03-16").success
    assert train(flywheel_env, churn_task).success
    registry = ModelRegistry(flywheel_env / "models")
    champion = registry.champion()
    failed = train(flywheel_env, churn_task, end_date="2026-01-01")
    assert not failed.success
    assert "no labelled cleaned rows in the training window 2025-12-17..2025-12-28" in failure_text(
        failed
    )
    assert registry.champion() == champion


def test_corrupt_champion_is_refused_and_stays(churn_task: Path, flywheel_env: Path):
    assert fill(flywheel_env, churn_task, "2025-03-01", "2025-03-16").success
    assert train(flywheel_env, churn_task).success
    registry = ModelRegistry(flywheel_env / "models")
    champion = registry.champion()
    (registry.path(champion) / "weights.pt").write_bytes(b"garbage")
    again = train(flywheel_env, churn_task)
    assert again.success
    decision = again.output_for_node("deployed_model")
    assert decision["promoted"] is False
    assert champion in decision["reason"] and "corrupt" in decision["reason"]
    assert registry.champion() == champion
