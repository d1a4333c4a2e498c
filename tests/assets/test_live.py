"""live_performance through Dagster: its sensor (cursor and run keys, through
build_sensor_context against a real SQLite store) and the asset's per-day metadata."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from assets.jobs import live_job
from assets.partitions import RANGE_END_TAG, RANGE_START_TAG
from assets.sensors import LIVE_RUN_KEY_TAG, build_live_performance_sensor, decide_live_run
from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.serving.features import records_for_api
from resources import FeedbackStoreResource, TaskSource
from tests.helpers import CHURN_START, build_home, flywheel_resources, graph_assets

FIRST = dt.date(2025, 1, 1)
DAYS = [CHURN_START + dt.timedelta(days=k) for k in (18, 19)]


def _predict_and_label(home, spec, version: str) -> FeedbackStore:
    """30 predictions on each of two days; feedback (the truth) for 25 of each day's."""
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    raw = PartitionStore(home / "raw_data")
    for day in DAYS:
        rows = raw.read(day).iloc[:30]
        ids = store.log_predictions(version, records_for_api(rows, spec), [0.3] * 30, 0.5)
        for pid, churned in list(zip(ids, rows["churned"], strict=True))[:25]:
            store.add_feedback(pid, int(churned == "YES"), "test")
    return store


def test_decide_live_run_keys_the_ids_and_keeps_to_the_partitions():
    d = dt.date(2025, 3, 5)
    assert decide_live_run(7, 7, [d], FIRST, d).skip == "no new feedback after id 7"
    found = decide_live_run(7, 9, [d, d - dt.timedelta(2), dt.date(2024, 1, 1)], FIRST, d)
    assert (found.run_key, found.first, found.last) == ("live-8-9", d - dt.timedelta(2), d)
    assert found.acted == 9
    outside = decide_live_run(7, 9, [dt.date(2030, 1, 1)], FIRST, d)
    assert outside.skip and outside.acted == 9  # nothing to refresh, and not asked again


def test_sensor_requests_one_run_over_the_touched_days_then_nothing(tmp_path):
    spec, home, registry = build_home(tmp_path)
    store = _predict_and_label(home, spec, registry.champion())
    sensor = build_live_performance_sensor(live_job, FIRST, interval_seconds=1)
    resources = {
        "feedback": FeedbackStoreResource(url=store.url),
        "task": TaskSource(task_file=str(tmp_path / "task" / "churn.yaml")),
    }
    with build_sensor_context(cursor=None, resources=resources) as context:
        result = sensor(context)
    [request] = result.run_requests
    assert request.run_key == "live-1-50" == request.tags[LIVE_RUN_KEY_TAG]
    assert request.tags[RANGE_START_TAG] == DAYS[0].isoformat()
    assert request.tags[RANGE_END_TAG] == DAYS[1].isoformat()
    assert result.cursor == '{"acted": 50}'
    with build_sensor_context(cursor=result.cursor, resources=resources) as context:
        again = sensor(context)
    assert (
        not again.run_requests and "no new feedback after id 50" in again.skip_reason.skip_message
    )
    store.close()


def test_live_performance_counts_each_days_labelled_predictions(tmp_path):
    spec, home, registry = build_home(tmp_path)
    champion = registry.champion()
    store = _predict_and_label(home, spec, champion)
    PartitionStore(home / "cleaned_features").path(DAYS[1]).unlink()
    graph, instance = graph_assets(), DagsterInstance.ephemeral()
    resources = {
        **flywheel_resources(home, tmp_path / "task" / "churn.yaml"),
        "feedback": FeedbackStoreResource(url=store.url),
    }
    result = materialize(
        [graph["live_performance"]], instance=instance, resources=resources,
        tags={RANGE_START_TAG: DAYS[0].isoformat(), RANGE_END_TAG: DAYS[1].isoformat()},
    )  # fmt: skip
    assert result.success
    # Day 1's batch labels matured (churn has no delay): they label all 30, the batch winning.
    # Day 2 is not in cleaned_features: its 25 feedback labels are all there is.
    first = pd.read_parquet(home / "live_performance" / f"{DAYS[0]}.parquet")
    assert len(first) == 30 and first["label_source"].eq("batch").all()
    second = pd.read_parquet(home / "live_performance" / f"{DAYS[1]}.parquet")
    assert second["label_source"].value_counts().to_dict() == {"feedback": 25, "": 5}
    assert set(second["model_version"]) == {champion}
    records = instance.fetch_materializations(AssetKey("live_performance"), limit=10).records
    by_day = {r.partition_key: r.asset_materialization.metadata for r in records}
    for day, labelled in zip(DAYS, (30, 25), strict=True):
        meta = by_day[day.isoformat()]
        assert meta["predictions"].value == 30 and meta["labelled"].value == labelled
        assert abs(meta["labelled_share"].value - labelled / 30) < 1e-9
        assert abs(meta["mean_score"].value - 0.3) < 1e-9
        assert meta["holdout_roc_auc"].value is None  # build_home's champion was not evaluated
    store.close()
