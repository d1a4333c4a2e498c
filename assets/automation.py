"""Automation: the nightly retrain, a schedule over one job from raw data to the deployed model.

Environment (read here, once, all optional):
    FLYWHEEL_RETRAIN_CRON    cron of ``nightly_retrain`` (default ``0 2 * * *``)
    FLYWHEEL_TIMEZONE        the timezone the cron is read in (default ``UTC``)
    FLYWHEEL_RETRAIN_CONFIG  a YAML file of run config merged into every nightly run (for
                             example ``ops: {trained_model: {config: {epochs: 10}}}``)
    FLYWHEEL_RETRAIN_DEFAULT_STATUS  ``running`` (default) or ``stopped``: the schedule's state
                             until someone switches it in the UI

Catch-up: Dagster's scheduler evaluates only the latest missed tick of a schedule that has no
partition set (``dagster/_scheduler/scheduler.py``: "has no partition set, so not trying to catch
up"), so a daemon that was down for three nights starts one run, not three. That one run fills
every day missed since the newest ``cleaned_features`` partition (at most ``MAX_CATCHUP_DAYS``)
as a single-run range, then retrains once on the newest window.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.data import cleaned_features, raw_data
from assets.deployment import deployed_model
from assets.partitions import daily_partitions
from assets.training import evaluation_report, trained_model

RETRAIN_CRON = os.environ.get("FLYWHEEL_RETRAIN_CRON") or "0 2 * * *"
TIMEZONE = os.environ.get("FLYWHEEL_TIMEZONE") or "UTC"
RETRAIN_CONFIG_FILE = os.environ.get("FLYWHEEL_RETRAIN_CONFIG", "")
DEFAULT_STATUS = DefaultScheduleStatus(
    (os.environ.get("FLYWHEEL_RETRAIN_DEFAULT_STATUS") or "running").upper()
)

# A catch-up run fills at most this many missed days; a longer gap is a backfill's job.
MAX_CATCHUP_DAYS = 7

PARTITION_TAG = "flywheel/partition"
REASON_TAG = "flywheel/reason"

nightly_job = define_asset_job(
    "nightly_job",
    selection=AssetSelection.assets(
        raw_data, cleaned_features, trained_model, evaluation_report, deployed_model
    ),
    partitions_def=daily_partitions,
    # The steps form one chain; a process per step would import torch once per step.
    executor_def=in_process_executor,
    description="Fill the previous day's raw_data and cleaned_features, retrain on the newest"
    " window, evaluate against the champion and run the gate.",
)


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


def nightly_request(
    scheduled: dt.datetime,
    timezone: str,
    materialized: set[str],
    run_config: Mapping[str, Any] | None = None,
) -> RunRequest | SkipReason:
    """The run of one tick: the previous day (and any days missed before it), then a retrain."""
    day = previous_day(scheduled, timezone)
    first_key = daily_partitions.get_first_partition_key()
    if first_key is None or day < dt.date.fromisoformat(first_key):
        return SkipReason(f"{day} is before the first partition ({first_key})")
    start = catch_up_start(day, materialized, dt.date.fromisoformat(first_key))
    tick = scheduled.isoformat(timespec="minutes")
    if start == day:
        reason = f"nightly retrain, tick {tick} ({timezone})"
        return RunRequest(
            run_key=day.isoformat(),
            partition_key=day.isoformat(),
            run_config=dict(run_config or {}),
            tags={PARTITION_TAG: day.isoformat(), REASON_TAG: reason},
        )
    n = (day - start).days + 1
    reason = f"nightly retrain, tick {tick} ({timezone}), catching up {n} missed days in one run"
    return RunRequest(
        run_key=f"{start.isoformat()}...{day.isoformat()}",
        run_config=dict(run_config or {}),
        tags={
            PARTITION_TAG: f"{start.isoformat()}...{day.isoformat()}",
            REASON_TAG: reason,
            ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: day.isoformat(),
        },
    )


def load_run_config(path: str) -> dict[str, Any]:
    """The run config of ``FLYWHEEL_RETRAIN_CONFIG`` (empty when unset)."""
    if not path:
        return {}
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        raise ValueError(f"FLYWHEEL_RETRAIN_CONFIG {path}: expected a mapping of run config")
    return config


def build_nightly_retrain(
    cron: str = RETRAIN_CRON,
    timezone: str = TIMEZONE,
    run_config: Mapping[str, Any] | None = None,
    default_status: DefaultScheduleStatus = DEFAULT_STATUS,
) -> ScheduleDefinition:
    """``nightly_retrain`` for a cron and timezone (tests build it with their own)."""
    ZoneInfo(timezone)  # an unknown timezone fails here, when the code location loads

    @schedule(
        name="nightly_retrain",
        job=nightly_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=default_status,
        description="Fill yesterday's partitions and retrain on the newest window; a missed"
        " night is caught up once.",
    )
    def _nightly_retrain(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        materialized = context.instance.get_materialized_partitions(AssetKey("cleaned_features"))
        return nightly_request(context.scheduled_execution_time, timezone, materialized, run_config)

    return _nightly_retrain


nightly_retrain = build_nightly_retrain(run_config=load_run_config(RETRAIN_CONFIG_FILE))
