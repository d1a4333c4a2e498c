"""Feedback group: labelled examples from users' feedback, and the sensor that retrains on them.

The sensor's cursor is JSON: ``acted`` (the newest feedback id a requested run covers),
``pending`` (that run's key until it ends), ``previous`` (``acted`` before the request) and
``attempt``. A run that fails or is cancelled moves ``acted`` back to ``previous``, so its
feedback is acted on again under a new run key; feedback that arrives during a run waits for
the next tick. Each run reads feedback up to ``acted`` only (``FeedbackConfig.upto_id``).
"""

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    Output,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    in_process_executor,
    sensor,
)
from pydantic import Field

from pipeline.feedback.store import clean_feedback
from pipeline.steps import preview
from pipeline.data.storage import write_parquet_atomic
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource

RUN_KEY_TAG = "flywheel/feedback_run_key"
LOST_RUN_SECONDS = 600  # a requested run that never appears is retried after this long
_ACTIVE = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.MANAGED,
    DagsterRunStatus.CANCELING,
}


def feedback_examples_path(storage: FlywheelStorage) -> Path:
    """Where ``user_feedback`` keeps its rows (``trained_model`` reads them from here)."""
    return storage.root / "user_feedback" / "examples.parquet"


class FeedbackConfig(Config):
    """Which feedback ``user_feedback`` includes."""

    upto_id: int = Field(
        default=0, description="Newest feedback id to include (the sensor sets it); 0: all."
    )


@asset(
    group_name="feedback",
    kinds={"python", "sql", "parquet"},
    tags={"layer": "features"},
)
def user_feedback(
    context: AssetExecutionContext,
    config: FeedbackConfig,
    task: TaskSource,
    storage: FlywheelStorage,
    feedback: FeedbackStoreResource,
) -> Output[None]:
    """Labelled examples from feedback joined to their logged inputs, cleaned like the days."""
    store = feedback.store()
    store.require_schema()
    raw = store.labelled_examples(config.upto_id or None)
    result = clean_feedback(task.spec(), raw, storage.partitions("raw_data"))
    path = feedback_examples_path(storage)
    write_parquet_atomic(result.features, path)
    write_parquet_atomic(result.quarantine, path.with_name("quarantine.parquet"))
    rows = result.features
    by_label = {str(k): int(v) for k, v in rows["label"].value_counts().sort_index().items()}
    by_source = {str(k): int(v) for k, v in rows["feedback_source"].value_counts().items()}
    context.log.info(f"{len(rows)} feedback examples, {len(result.quarantine)} quarantined")
    return Output(
        None,
        metadata={
            "dagster/row_count": len(rows),
            "quarantined_rows": len(result.quarantine),
            "by_label": MetadataValue.json(by_label),
            "by_source": MetadataValue.json(by_source),
            "newest_feedback_id": result.newest_feedback_id or 0,
            "path": MetadataValue.path(str(path)),
            "preview": MetadataValue.md(preview(rows)),
        },
    )


feedback_job = define_asset_job(
    "feedback_job",
    selection=AssetSelection.assets(user_feedback).downstream(),
    # One process for the whole run: no per-step start-up (imports of torch and Lightning).
    executor_def=in_process_executor,
    description="Turn new feedback into examples, retrain, evaluate and run the gate.",
)


@dataclass
class FeedbackCursor:
    acted: int = 0
    previous: int = 0
    pending: str | None = None
    requested_at: float | None = None
    attempt: int = 0

    @classmethod
    def parse(cls, text: str | None) -> "FeedbackCursor":
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def run_key(acted: int, newest: int, attempt: int) -> str:
    """The same feedback range (and attempt) always gives the same key."""
    return f"feedback-{acted + 1}-{newest}" + (f"-attempt{attempt}" if attempt else "")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _deep_merge(out[key], value) if both else value
    return out


def build_feedback_sensor(
    min_new_feedback: int = 100,
    max_wait_minutes: float = 60.0,
    interval_seconds: int = 30,
    run_config: dict[str, Any] | None = None,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
):
    """The feedback sensor with its thresholds; ``run_config`` is merged into each run's."""

    @sensor(
        name="feedback_sensor",
        job=feedback_job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description=(
            f"Retrains when {min_new_feedback} new feedback rows have arrived, or the oldest"
            f" unacted row is {max_wait_minutes:g} minutes old."
        ),
    )
    def feedback_sensor(context: SensorEvaluationContext, feedback: FeedbackStoreResource):
        cursor = FeedbackCursor.parse(context.cursor)
        now = time.time()
        if cursor.pending:
            runs = context.instance.get_runs(
                RunsFilter(tags={RUN_KEY_TAG: cursor.pending}), limit=1
            )
            status = runs[0].status if runs else None
            waited = now - (cursor.requested_at or now)
            if status in _ACTIVE or (status is None and waited < LOST_RUN_SECONDS):
                what = status.value.lower() if status else "not started yet"
                return SkipReason(f"run {cursor.pending} is {what}")
            if status == DagsterRunStatus.SUCCESS:
                cursor.pending, cursor.attempt = None, 0
            else:  # failed, cancelled or lost: its feedback is acted on again
                what = status.value.lower() if status else f"missing after {waited:.0f} s"
                context.log.warning(f"run {cursor.pending} {what}; retrying its feedback")
                cursor.acted, cursor.pending = cursor.previous, None
                cursor.attempt += 1

        store = feedback.store()
        if store.schema_version() is None:
            return SensorResult(skip_reason="the feedback store has no tables yet (serve first)",
                                cursor=cursor.dump())  # fmt: skip
        new = store.summary_after(cursor.acted)
        if new.count == 0:
            return SensorResult(
                skip_reason=f"no new feedback after id {cursor.acted}", cursor=cursor.dump()
            )
        age_minutes = (dt.datetime.now(dt.UTC) - new.oldest_at).total_seconds() / 60
        if new.count < min_new_feedback and age_minutes < max_wait_minutes:
            return SensorResult(
                skip_reason=(
                    f"{new.count} new feedback row(s) after id {cursor.acted}: waiting for"
                    f" {min_new_feedback}, or for the oldest ({age_minutes:.1f} min) to reach"
                    f" {max_wait_minutes:g} min"
                ),
                cursor=cursor.dump(),
            )
        key = run_key(cursor.acted, new.newest_id, cursor.attempt)
        config = _deep_merge(
            run_config or {}, {"ops": {"user_feedback": {"config": {"upto_id": new.newest_id}}}}
        )
        request = RunRequest(
            run_key=key,
            run_config=config,
            tags={RUN_KEY_TAG: key, "flywheel/feedback_ids": f"{cursor.acted + 1}-{new.newest_id}"},
        )
        after = FeedbackCursor(new.newest_id, cursor.acted, key, now, cursor.attempt)
        return SensorResult(run_requests=[request], cursor=after.dump())

    return feedback_sensor
