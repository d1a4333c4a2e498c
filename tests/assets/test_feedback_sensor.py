"""The feedback sensor through build_sensor_context, and the user_feedback asset."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import DagsterRunStatus, build_sensor_context, instance_for_test, materialize
from dagster._core.test_utils import create_run_for_test

from assets.feedback import (
    RUN_KEY_TAG,
    FeedbackCursor,
    build_feedback_sensor,
    feedback_examples_path,
    user_feedback,
)
from pipeline.feedback.store import FeedbackStore, feedback, sqlite_url
from pipeline.serving.app import records_for_api
from pipeline.data.storage import PartitionStore
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource
from tests.pipeline.test_serving import SERVE_DAY, build_home


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(sqlite_url(tmp_path))
    store.upgrade()
    yield store
    store.close()


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def add_feedback(store: FeedbackStore, n: int, label: int = 1) -> list[int]:
    ids = store.log_predictions("v1", [{"x": i} for i in range(n)], [0.5] * n, 0.5)
    return [store.add_feedback(pid, label, "test").id for pid in ids]


def tick(instance, store, cursor=None, **kwargs):
    sensor = build_feedback_sensor(min_new_feedback=10, max_wait_minutes=60, **kwargs)
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"feedback": FeedbackStoreResource(url=store.url)},
    )
    return sensor.evaluate_tick(context)


def test_nothing_new_then_below_then_above_threshold(instance, store):
    result = tick(instance, store)
    assert not result.run_requests and "no new feedback" in result.skip_message
    add_feedback(store, 9)
    result = tick(instance, store)
    assert not result.run_requests and "9 new feedback" in result.skip_message
    assert FeedbackCursor.parse(result.cursor).acted == 0
    add_feedback(store, 1)
    result = tick(instance, store, cursor=result.cursor)
    [request] = result.run_requests
    assert request.run_key == "feedback-1-10"
    assert request.run_config["ops"]["user_feedback"]["config"]["upto_id"] == 10
    cursor = FeedbackCursor.parse(result.cursor)
    assert (cursor.acted, cursor.previous, cursor.pending) == (10, 0, "feedback-1-10")
    # The same cursor gives the same run key: a repeated tick never starts new work.
    again = tick(instance, store, cursor=FeedbackCursor().dump())
    assert again.run_requests[0].run_key == "feedback-1-10"


def test_age_rule(instance, store):
    add_feedback(store, 3)
    assert not tick(instance, store).run_requests
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=61)
    with store.engine.begin() as conn:
        conn.execute(sa.update(feedback).where(feedback.c.id == 1).values(created_at=old))
    [request] = tick(instance, store).run_requests
    assert request.run_key == "feedback-1-3"


@pytest.mark.parametrize(
    ("status", "expect_key"),
    [
        (DagsterRunStatus.STARTED, None),  # still running: wait
        (DagsterRunStatus.SUCCESS, None),  # done: the 5 rows since are below the threshold
        (DagsterRunStatus.FAILURE, "feedback-1-15-attempt1"),  # failed: acted on again
    ],
)
def test_pending_run(instance, store, status, expect_key):
    add_feedback(store, 10)
    first = tick(instance, store)
    key = first.run_requests[0].run_key
    create_run_for_test(instance, job_name="feedback_job", status=status, tags={RUN_KEY_TAG: key})
    add_feedback(store, 5)  # arrives during the run
    result = tick(instance, store, cursor=first.cursor)
    keys = [r.run_key for r in result.run_requests]
    assert keys == ([expect_key] if expect_key else [])
    cursor = FeedbackCursor.parse(result.cursor or first.cursor)
    if status == DagsterRunStatus.STARTED:
        assert "started" in result.skip_message and cursor.pending == key
    elif status == DagsterRunStatus.SUCCESS:
        assert "5 new feedback" in result.skip_message
        assert (cursor.acted, cursor.pending) == (10, None)
    else:
        assert (cursor.acted, cursor.previous, cursor.attempt) == (15, 0, 1)


def test_sensor_and_job_load_from_definitions():
    from definitions import defs

    assert defs.resolve_sensor_def("feedback_sensor").minimum_interval_seconds > 0
    job = defs.resolve_job_def("feedback_job")
    assert {"user_feedback", "trained_model", "evaluation_report", "deployed_model"} <= {
        n.name for n in job.graph.node_defs
    }


@pytest.mark.slow
def test_user_feedback_asset_cleans_examples(tmp_path):
    spec, home, _ = build_home(tmp_path)
    store = FeedbackStore(sqlite_url(home))
    store.upgrade()
    rows = PartitionStore(home / "raw_data").read(SERVE_DAY).head(30)
    records = records_for_api(rows, spec)
    records[0] = {**records[0], "event_time": "not a time"}
    ids = store.log_predictions("v1", records, [0.5] * 30, 0.5)
    for i, pid in enumerate(ids):
        store.add_feedback(pid, i % 2, "test" if i < 20 else "other")
    resources = {
        "feedback": FeedbackStoreResource(url=store.url),
        "storage": FlywheelStorage(home=str(home)),
        "task": TaskSource(task_file=str(tmp_path / "task" / "churn.yaml")),
    }
    result = materialize(
        [user_feedback],
        resources=resources,
        run_config={"ops": {"user_feedback": {"config": {"upto_id": 25}}}},
    )
    meta = result.asset_materializations_for_node("user_feedback")[0].metadata
    assert meta["dagster/row_count"].value == 24 and meta["quarantined_rows"].value == 1
    assert meta["newest_feedback_id"].value == 25
    assert json.loads(json.dumps(meta["by_source"].value)) == {"test": 19, "other": 5}
    examples = pd.read_parquet(feedback_examples_path(resources["storage"]))
    assert examples["label"].tolist() == [i % 2 for i in range(1, 25)]
    assert examples["rate_region_3d"].notna().all()  # lagged rates from raw_data history
    store.close()
