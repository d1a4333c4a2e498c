"""The shadow sensor, beside the feedback sensor with its own cursor: a run of
``shadow_evaluation`` when new feedback labelled requests that a version in shadow scored (a
candidate, or the previous champion on probation), or when a candidate's time is up.

Cursor: JSON ``{"acted": <newest feedback id accounted for>}``. Run keys name the feedback ids
(``shadow-<first>-<last>``) or the expired candidate, so a tick never requests the same work
twice. What a tick does is decided by :func:`decide_shadow_run`, tested without Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.sensors import FEEDBACK_IDS_TAG
from pipeline.feedback.queries import shadowed_feedback_between
from pipeline.feedback.schema import SCHEMA_VERSION
from pipeline.model.candidate import CANDIDATE, CandidateError
from pipeline.shadow import age_in_days
from resources import FeedbackStoreResource, FlywheelStorage

SHADOW_RUN_KEY_TAG = "flywheel/shadow_run_key"


@dataclass(frozen=True)
class ShadowRunDecision:
    acted: int  # the new cursor
    skip: str | None = None
    run_key: str | None = None


def decide_shadow_run(
    acted: int,
    newest: int,
    touched: int,
    shadow: dict[str, Any] | None,
    now: dt.datetime,
    max_days: float,
) -> ShadowRunDecision:
    """Feedback ids ``acted + 1 .. newest`` labelled ``touched`` shadowed requests; ``shadow`` is
    candidate.json's record (None: nothing in shadow)."""
    if shadow is None:
        return ShadowRunDecision(max(acted, newest), skip="nothing is scored in shadow")
    if newest > acted and touched:
        return ShadowRunDecision(newest, run_key=f"shadow-{acted + 1}-{newest}")
    expired = shadow["role"] == CANDIDATE and age_in_days(shadow["since"], now) >= max_days
    if expired:  # judged once more, without new feedback: it is rejected if still not proven
        return ShadowRunDecision(
            max(acted, newest), run_key=f"shadow-expired-{shadow['version']}-{shadow['since']}"
        )
    if newest <= acted:
        return ShadowRunDecision(acted, skip=f"no new feedback after id {acted}")
    return ShadowRunDecision(
        newest, skip=f"feedback {acted + 1}-{newest} labelled no shadowed request"
    )


def build_shadow_sensor(
    job: Any,
    interval_seconds: int = 30,
    max_days: float = 7.0,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
) -> SensorDefinition:
    """Runs ``job`` (``shadow_evaluation``) when new feedback touches shadowed requests."""

    @sensor(
        name="shadow_sensor",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description="Runs shadow_evaluation when new feedback labels requests that a candidate"
        " (or the previous champion on probation) scored in shadow.",
    )
    def shadow_sensor(
        context: SensorEvaluationContext, feedback: FeedbackStoreResource, storage: FlywheelStorage
    ):
        acted = int(json.loads(context.cursor)["acted"]) if context.cursor else 0
        store = feedback.store()
        if store.schema_version() != SCHEMA_VERSION:
            return SensorResult(skip_reason="the feedback store has no shadow columns yet (serve"
                                " first: `flywheel serve` upgrades it)")  # fmt: skip
        try:
            shadow = storage.registry().shadow_record()
        except CandidateError as err:
            return SensorResult(skip_reason=str(err))
        newest = store.newest_feedback_id()
        touched = (
            shadowed_feedback_between(store, acted, newest) if shadow and newest > acted else 0
        )
        now = dt.datetime.now(dt.UTC)
        decision = decide_shadow_run(acted, newest, touched, shadow, now, max_days)
        cursor = json.dumps({"acted": decision.acted})
        if decision.skip:
            return SensorResult(skip_reason=decision.skip, cursor=cursor)
        tags = {SHADOW_RUN_KEY_TAG: decision.run_key, FEEDBACK_IDS_TAG: f"{acted + 1}-{newest}"}
        request = RunRequest(run_key=decision.run_key, tags=tags)
        return SensorResult(run_requests=[request], cursor=cursor)

    return shadow_sensor
