"""The feedback sensor: its decision as plain functions, and the sensor through
build_sensor_context against a real SQLite store."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from dagster import DagsterRun, DagsterRunStatus, build_sensor_context, instance_for_test

from assets.jobs import feedback_job
from assets.sensors import (
    RUN_KEY_TAG,
    FeedbackCursor,
    build_feedback_sensor,
    decide_feedback_run,
    settle_pending,
)
from pipeline.feedback.records import FeedbackSummary
from pipeline.feedback.schema import feedback
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from resources import FeedbackStoreResource


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(FlywheelHome.at(tmp_path).feedback_url)
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
    sensor = build_feedback_sensor(feedback_job, min_new_feedback=10, max_wait_minutes=60, **kwargs)
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
    instance.add_run(DagsterRun(job_name="feedback_job", status=status, tags={RUN_KEY_TAG: key}))
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


# -- the decision, without Dagster --------------------------------------------------------------
NOW = 1_800_000_000.0


def summary(count: int, newest: int | None, minutes_old: float) -> FeedbackSummary:
    oldest = dt.datetime.fromtimestamp(NOW - 60 * minutes_old, dt.UTC) if count else None
    return FeedbackSummary(count, newest, oldest)


@pytest.mark.parametrize(
    ("count", "minutes_old", "starts"),
    [(0, 0, False), (9, 1, False), (10, 1, True), (3, 60, True), (3, 59.9, False)],
)
def test_decision_counts_rows_or_waits_for_the_oldest(count, minutes_old, starts):
    cursor = FeedbackCursor(acted=5)
    decision = decide_feedback_run(cursor, summary(count, 5 + count, minutes_old), NOW, 10, 60)
    assert (decision.run_key is not None) == starts
    if starts:
        assert decision.run_key == f"feedback-6-{5 + count}"
        assert (decision.first_id, decision.upto_id) == (6, 5 + count)
        after = decision.cursor
        assert (after.acted, after.previous, after.pending, after.requested_at) == (
            5 + count, 5, decision.run_key, NOW
        )  # fmt: skip
    else:
        assert decision.cursor == cursor and decision.skip


@pytest.mark.parametrize(
    ("status", "waited", "wait", "acted", "attempt"),
    [
        ("STARTED", 5, True, 10, 0),
        ("QUEUED", 5, True, 10, 0),
        (None, 5, True, 10, 0),  # not started yet
        ("SUCCESS", 5, False, 10, 0),
        ("FAILURE", 5, False, 0, 1),  # its feedback is acted on again
        ("CANCELED", 5, False, 0, 1),
        (None, 601, False, 0, 1),  # lost
    ],
)
def test_settle_pending(status, waited, wait, acted, attempt):
    cursor = FeedbackCursor(10, 0, "feedback-1-10", NOW - waited, 0)
    settled = settle_pending(cursor, status, NOW)
    assert bool(settled.wait) == wait
    assert (settled.cursor.acted, settled.cursor.attempt) == (acted, attempt)
    assert (settled.cursor.pending is None) == (not wait)
    assert bool(settled.warning) == (attempt == 1)
