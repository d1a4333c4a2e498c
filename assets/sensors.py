"""The feedback sensor: a run of ``user_feedback`` and everything downstream when enough new
feedback has arrived.

The sensor's cursor is JSON: ``acted`` (the newest feedback id a requested run covers),
``pending`` (that run's key until it ends), ``previous`` (``acted`` before the request) and
``attempt``. A run that fails or is cancelled moves ``acted`` back to ``previous``, so its
feedback is acted on again under a new run key; feedback that arrives during a run waits for
the next tick. Each run reads feedback up to ``acted`` only (``FeedbackConfig.upto_id``).

What a tick does is decided by two plain functions, :func:`settle_pending` and
:func:`decide_feedback_run`, tested without Dagster; the sensor only gathers their inputs (the
pending run's status, the store's summary) and turns their answer into a ``RunRequest``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.partitions import range_tags
from pipeline.feedback.queries import records_with_feedback_between
from pipeline.feedback.records import FeedbackSummary
from pipeline.live import record_days
from resources import FeedbackStoreResource, TaskSource

RUN_KEY_TAG = "flywheel/feedback_run_key"
FEEDBACK_IDS_TAG = "flywheel/feedback_ids"
LOST_RUN_SECONDS = 600  # a requested run that never appears is retried after this long
_ACTIVE = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.MANAGED,
    DagsterRunStatus.CANCELING,
}


@dataclass(frozen=True)
class FeedbackCursor:
    acted: int = 0
    previous: int = 0
    pending: str | None = None
    requested_at: float | None = None
    attempt: int = 0

    @classmethod
    def parse(cls, text: str | None) -> FeedbackCursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def run_key(acted: int, newest: int, attempt: int) -> str:
    """The same feedback range (and attempt) always gives the same key."""
    return f"feedback-{acted + 1}-{newest}" + (f"-attempt{attempt}" if attempt else "")


@dataclass(frozen=True)
class Settled:
    """The cursor once the pending run (if any) is accounted for."""

    cursor: FeedbackCursor
    wait: str | None = None  # why to skip this tick: the pending run is still on its way
    warning: str | None = None  # the pending run failed or was lost: its feedback is retried


def settle_pending(cursor: FeedbackCursor, status: str | None, now: float) -> Settled:
    """Accounts for the pending run: ``status`` is its Dagster run status (``"SUCCESS"``,
    ``"STARTED"``, ...) or None when no such run exists (yet)."""
    if not cursor.pending:
        return Settled(cursor)
    waited = now - (cursor.requested_at or now)
    active = status is not None and DagsterRunStatus(status) in _ACTIVE
    if active or (status is None and waited < LOST_RUN_SECONDS):
        what = status.lower() if status else "not started yet"
        return Settled(cursor, wait=f"run {cursor.pending} is {what}")
    if status == DagsterRunStatus.SUCCESS.value:
        return Settled(replace(cursor, pending=None, attempt=0))
    what = status.lower() if status else f"missing after {waited:.0f} s"
    retried = replace(cursor, acted=cursor.previous, pending=None, attempt=cursor.attempt + 1)
    return Settled(retried, warning=f"run {cursor.pending} {what}; retrying its feedback")


@dataclass(frozen=True)
class FeedbackDecision:
    """A tick's answer: skip (with why), or start a run over feedback ids ``first..upto_id``."""

    cursor: FeedbackCursor
    skip: str | None = None
    run_key: str | None = None
    first_id: int | None = None
    upto_id: int | None = None


def decide_feedback_run(
    cursor: FeedbackCursor,
    new: FeedbackSummary,
    now: float,
    min_new_feedback: int,
    max_wait_minutes: float,
) -> FeedbackDecision:
    """Whether the feedback after ``cursor.acted`` (summarized in ``new``) is worth a run now:
    at least ``min_new_feedback`` rows, or the oldest of them ``max_wait_minutes`` old."""
    if new.count == 0 or new.newest_id is None or new.oldest_at is None:
        return FeedbackDecision(cursor, skip=f"no new feedback after id {cursor.acted}")
    age_minutes = (now - new.oldest_at.timestamp()) / 60
    if new.count < min_new_feedback and age_minutes < max_wait_minutes:
        return FeedbackDecision(
            cursor,
            skip=f"{new.count} new feedback row(s) after id {cursor.acted}: waiting for"
            f" {min_new_feedback}, or for the oldest ({age_minutes:.1f} min) to reach"
            f" {max_wait_minutes:g} min",
        )
    key = run_key(cursor.acted, new.newest_id, cursor.attempt)
    after = FeedbackCursor(new.newest_id, cursor.acted, key, now, cursor.attempt)
    return FeedbackDecision(after, run_key=key, first_id=cursor.acted + 1, upto_id=new.newest_id)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if both else value
    return out


def build_feedback_sensor(
    job: Any,  # a job of assets/jobs.py (define_asset_job's, resolved by Definitions)
    min_new_feedback: int = 100,
    max_wait_minutes: float = 60.0,
    interval_seconds: int = 30,
    run_config: dict[str, Any] | None = None,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """The feedback sensor of ``job`` with its thresholds; ``run_config`` is merged into each
    run's."""

    @sensor(
        name="feedback_sensor",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description=(
            f"Retrains when {min_new_feedback} new feedback rows have arrived, or the oldest"
            f" unacted row is {max_wait_minutes:g} minutes old."
        ),
    )
    def feedback_sensor(context: SensorEvaluationContext, feedback: FeedbackStoreResource):
        cursor, now = FeedbackCursor.parse(context.cursor), time.time()
        status = None
        if cursor.pending:
            runs = context.instance.get_runs(
                RunsFilter(tags={RUN_KEY_TAG: cursor.pending}), limit=1
            )
            status = runs[0].status.value if runs else None
        settled = settle_pending(cursor, status, now)
        if settled.wait:
            return SensorResult(skip_reason=settled.wait, cursor=cursor.dump())
        if settled.warning:
            context.log.warning(settled.warning)
        store = feedback.store()
        if store.schema_version() is None:
            return SensorResult(skip_reason="the feedback store has no tables yet (serve first)",
                                cursor=settled.cursor.dump())  # fmt: skip
        new = store.summary_after(settled.cursor.acted)
        decision = decide_feedback_run(settled.cursor, new, now, min_new_feedback, max_wait_minutes)
        if decision.skip:
            return SensorResult(skip_reason=decision.skip, cursor=decision.cursor.dump())
        config = _deep_merge(
            run_config or {}, {"ops": {"user_feedback": {"config": {"upto_id": decision.upto_id}}}}
        )
        request = RunRequest(
            run_key=decision.run_key,
            run_config=config,
            tags={
                RUN_KEY_TAG: decision.run_key,
                FEEDBACK_IDS_TAG: f"{decision.first_id}-{decision.upto_id}",
            },
        )
        return SensorResult(run_requests=[request], cursor=decision.cursor.dump())

    return feedback_sensor


# -- live performance ---------------------------------------------------------------------------
LIVE_RUN_KEY_TAG = "flywheel/live_run_key"


@dataclass(frozen=True)
class LiveDecision:
    """A tick of ``live_performance_sensor``: skip (with why), or refresh ``first..last``."""

    acted: int  # the new cursor: the newest feedback id accounted for
    skip: str | None = None
    run_key: str | None = None
    first: dt.date | None = None
    last: dt.date | None = None


def decide_live_run(
    acted: int, newest: int, days: list[dt.date], first: dt.date, last: dt.date
) -> LiveDecision:
    """Feedback ids ``acted + 1 .. newest`` touched the prediction ``days``: one run over the
    range of those that are partitions (``first..last``), keyed by the ids so a tick never
    requests the same work twice."""
    if newest <= acted:
        return LiveDecision(acted, skip=f"no new feedback after id {acted}")
    inside = sorted({d for d in days if first <= d <= last})
    if not inside:
        return LiveDecision(
            newest, skip=f"feedback {acted + 1}-{newest} touched no day in {first}..{last}"
        )
    key = f"live-{acted + 1}-{newest}"
    return LiveDecision(newest, run_key=key, first=inside[0], last=inside[-1])


def build_live_performance_sensor(
    job: Any,
    first: dt.date,
    interval_seconds: int = 30,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Keeps ``live_performance`` current: each tick, one run (a single-run backfill) over the
    days of the predictions that new feedback labelled. Cursor: the newest feedback id."""

    @sensor(
        name="live_performance_sensor",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description="Refreshes live_performance for the days that new feedback touched.",
    )
    def live_performance_sensor(
        context: SensorEvaluationContext, feedback: FeedbackStoreResource, task: TaskSource
    ):
        acted = int(json.loads(context.cursor)["acted"]) if context.cursor else 0
        store = feedback.store()
        if store.schema_version() is None:
            return SensorResult(skip_reason="the feedback store has no tables yet (serve first)")
        newest = store.newest_feedback_id()
        records = records_with_feedback_between(store, acted, newest) if newest > acted else []
        days = list(record_days(records, task.spec()))
        last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)  # the newest partition
        decision = decide_live_run(acted, newest, days, first, last)
        cursor = json.dumps({"acted": decision.acted})
        if decision.skip:
            return SensorResult(skip_reason=decision.skip, cursor=cursor)
        assert decision.first and decision.last and decision.run_key
        tags = {LIVE_RUN_KEY_TAG: decision.run_key, FEEDBACK_IDS_TAG: f"{acted + 1}-{newest}"}
        if decision.first == decision.last:
            request = RunRequest(run_key=decision.run_key, partition_key=str(decision.first),
                                 tags=tags)  # fmt: skip
        else:
            request = RunRequest(
                run_key=decision.run_key, tags={**tags, **range_tags(decision.first, decision.last)}
            )
        return SensorResult(run_requests=[request], cursor=cursor)

    return live_performance_sensor
