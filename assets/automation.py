"""Automation: the nightly retrain, a schedule over one job from raw data to the deployed model.

Its settings (cron, timezone, run config, default status) come from ``definitions.py``, which reads
them from the environment (``FLYWHEEL_RETRAIN_*``, ``FLYWHEEL_TIMEZONE``).

Catch-up: Dagster's scheduler evaluates only the latest missed tick of a schedule that has no
partition set (``dagster/_scheduler/scheduler.py``: "has no partition set, so not trying to catch
up"), so a daemon that was down for three nights starts one run, not three. That one run fills
every day missed since the newest ``cleaned_features`` partition (at most ``MAX_CATCHUP_DAYS``)
as a single-run range, then retrains once on the newest window.

Labels that mature: with the task's ``label_delay_days`` (D), the batch labels of day X become
usable on X + D. The same run therefore starts early enough to re-materialize the
``cleaned_features`` days whose labels matured since the last run (the D - 1 days before the
first day it fills, for one missed night or none), so that batch labels arrive on their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from dagster import (
    AssetKey,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from assets.partitions import range_tags

DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"

# A catch-up run fills at most this many missed days; a longer gap is a backfill's job.
MAX_CATCHUP_DAYS = 7

PARTITION_TAG = "flywheel/partition"
REASON_TAG = "flywheel/reason"


def previous_day(scheduled: dt.datetime, timezone: str) -> dt.date:
    """The day a tick at ``scheduled`` fills: the day before the tick's date in ``timezone``,
    but never a UTC day that has not ended yet (partitions are UTC days)."""
    local = scheduled.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    utc = scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    return min(local, utc)


def catch_up_start(day: dt.date, materialized: set[str], first: dt.date) -> dt.date:
    """The first day the run fills: the day after the newest ``cleaned_features`` partition
    before ``day`` (so missed nights are filled too), at most ``MAX_CATCHUP_DAYS`` back, never
    before the first partition. With nothing materialized yet, just ``day``: history is a
    backfill's job."""
    done = [d for d in map(dt.date.fromisoformat, materialized) if d < day]
    if not done:
        return day
    return max(
        max(done) + dt.timedelta(days=1), day - dt.timedelta(days=MAX_CATCHUP_DAYS - 1), first
    )


def matured_start(start: dt.date, first: dt.date, label_delay_days: int) -> dt.date:
    """The first day of a run that fills ``start..`` (for the clock ``start + 1``, the run's
    day): the oldest day whose batch labels matured since the previous run, whose clock was
    ``start``. Day X matures on X + delay, so those are ``start + 1 - delay ..``."""
    return max(first, start - dt.timedelta(days=max(label_delay_days - 1, 0)))


def nightly_request(
    scheduled: dt.datetime,
    timezone: str,
    materialized: set[str],
    first: dt.date,
    run_config: Mapping[str, Any] | None = None,
    label_delay_days: int = 0,
) -> RunRequest | SkipReason:
    """The run of one tick: the previous day (and any days missed before it, and the days whose
    labels matured since the last run), then a retrain. ``first`` is the first daily partition."""
    day = previous_day(scheduled, timezone)
    if day < first:
        return SkipReason(f"{day} is before the first partition ({first})")
    filled = catch_up_start(day, materialized, first)
    start = matured_start(filled, first, label_delay_days) if materialized else filled
    tick = scheduled.isoformat(timespec="minutes")
    if start == day:
        reason = f"nightly retrain, tick {tick} ({timezone})"
        return RunRequest(
            run_key=day.isoformat(),
            partition_key=day.isoformat(),
            run_config=dict(run_config or {}),
            tags={PARTITION_TAG: day.isoformat(), REASON_TAG: reason},
        )
    n, matured = (day - filled).days + 1, (filled - start).days
    reason = f"nightly retrain, tick {tick} ({timezone}), "
    reason += f"catching up {n} missed days in one run" if n > 1 else "filling 1 day"
    if matured:
        reason += f", from {start}: the labels of {start} matured since the last run"
    return RunRequest(
        run_key=f"{start.isoformat()}...{day.isoformat()}",
        run_config=dict(run_config or {}),
        tags={
            PARTITION_TAG: f"{start.isoformat()}...{day.isoformat()}",
            REASON_TAG: reason,
            **range_tags(start, day),
        },
    )


def load_run_config(path: str | None) -> dict[str, Any]:
    """The run config in the YAML file ``path`` (``FLYWHEEL_RETRAIN_CONFIG``; empty when unset)."""
    if not path:
        return {}
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"FLYWHEEL_RETRAIN_CONFIG {path}: expected a mapping of run config")
    return config


def build_nightly_retrain(
    job: Any,  # a job of assets/jobs.py (define_asset_job's, resolved by Definitions)
    first: dt.date,
    cron: str = DEFAULT_CRON,
    timezone: str = DEFAULT_TIMEZONE,
    run_config: Mapping[str, Any] | None = None,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING,
    label_delay_days: int = 0,
) -> ScheduleDefinition:
    """``nightly_retrain`` of ``job`` for a cron and timezone; ``first``: the first partition;
    ``label_delay_days``: the task's (which days' labels mature each night)."""
    ZoneInfo(timezone)  # an unknown timezone fails here, when the code location loads

    @schedule(
        name="nightly_retrain",
        job=job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=default_status,
        description="Fill yesterday's partitions, re-materialize the days whose labels matured,"
        " and retrain on the newest window; a missed night is caught up once.",
    )
    def _nightly_retrain(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        materialized = context.instance.get_materialized_partitions(AssetKey("cleaned_features"))
        return nightly_request(
            context.scheduled_execution_time, timezone, materialized, first, run_config,
            label_delay_days,
        )  # fmt: skip

    return _nightly_retrain
