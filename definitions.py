"""Flywheel's one ``Definitions``: assets, checks, jobs, schedules, sensors and the resources,
chosen from the environment here and nowhere else.

Environment (all optional):
    FLYWHEEL_HOME        where Flywheel writes its files (default: ``.flywheel/`` here)
    FLYWHEEL_TASK        a YAML task file (default: the built-in flights task)
    FLYWHEEL_START_DATE  first daily partition (default 2025-01-01)
    FLYWHEEL_RETRAIN_CRON, FLYWHEEL_TIMEZONE
                         when ``nightly_retrain`` runs (default ``0 2 * * *`` in UTC)
    FLYWHEEL_RETRAIN_CONFIG  a YAML file of run config merged into every nightly run (for
                         example ``ops: {trained_model: {config: {epochs: 10}}}``)
    FLYWHEEL_RETRAIN_DEFAULT_STATUS  ``running`` (default) or ``stopped``: the schedule's state
                         until someone switches it in the UI
    FLYWHEEL_FEEDBACK_URL  SQLAlchemy URL of the feedback store (default: SQLite in FLYWHEEL_HOME)
    FLYWHEEL_FEEDBACK_MIN_NEW, FLYWHEEL_FEEDBACK_MAX_WAIT_MINUTES,
    FLYWHEEL_FEEDBACK_INTERVAL_SECONDS
                         the feedback sensor's thresholds (defaults 100 rows, 60 min, 30 s)
    FLYWHEEL_FEEDBACK_RUN_CONFIG  JSON run config merged into each feedback run's config
    FLYWHEEL_FEEDBACK_SENSOR  "running" starts the feedback sensor without a click (and the
                         live_performance and shadow sensors beside it)
    FLYWHEEL_PROMOTION   ``direct`` (default) or ``shadow``: the default of deployed_model's
                         ``promotion`` (a challenger that passes becomes the champion, or the
                         candidate scored in shadow until shadow_evaluation decides)
    FLYWHEEL_TRAINING_GPUS  GPUs asked for each training run's pod on Kubernetes (the
                         ``dagster-k8s/config`` tag of the jobs that train; default 0: none)

The layers are described in ``docs/architecture.md``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    in_process_executor,
)

from assets.automation import (
    DEFAULT_CRON,
    DEFAULT_TIMEZONE,
    build_nightly_retrain,
    load_run_config,
)
from assets.checks import build_data_checks
from assets.data import build_data_assets
from assets.deployment import build_deployed_model, shadow_evaluation
from assets.feedback import build_live_performance, user_feedback
from assets.jobs import build_jobs, k8s_gpu_tags
from assets.partitions import DEFAULT_START_DATE, daily_partitions
from assets.sensors import build_feedback_sensor, build_live_performance_sensor
from assets.shadow_sensor import build_shadow_sensor
from assets.training import evaluation_report, trained_model
from pipeline.home import FlywheelHome
from pipeline.task import load_task
from resources import (
    FeedbackStoreResource,
    FlywheelStorage,
    JsonIOManager,
    TaskSource,
)

PROJECT_DIR = Path(__file__).resolve().parent

# Flywheel uses these Beta and Preview features on purpose: single-run backfills, a lagged
# dependency that may reach before the first partition, and checks partitioned like their
# assets. Their warnings would show in every terminal and run log; these exactly are hidden.
ON_PURPOSE = (
    r"Parameter `backfill_policy` of function `asset` is currently in beta",
    r"Parameter `allow_nonexistent_upstream_partitions` of initializer"
    r" `TimeWindowPartitionMapping.__init__` is currently in beta",
    r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
)


@contextmanager
def _features_used_on_purpose() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in ON_PURPOSE:
            warnings.filterwarnings("ignore", message=message)
        yield


@dataclass(frozen=True)
class Settings:
    """Everything the environment chooses; :meth:`from_env` is the one reader of it."""

    home: str = str(PROJECT_DIR / ".flywheel")
    task_file: str = ""
    start_date: str = DEFAULT_START_DATE
    retrain_cron: str = DEFAULT_CRON
    timezone: str = DEFAULT_TIMEZONE
    retrain_config: dict[str, Any] = field(default_factory=dict)
    retrain_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING
    feedback_url_from_env: bool = False  # FLYWHEEL_FEEDBACK_URL set: resolved at run time
    feedback_min_new: int = 100
    feedback_max_wait_minutes: float = 60.0
    feedback_interval_seconds: int = 30
    feedback_run_config: dict[str, Any] = field(default_factory=dict)
    feedback_sensor_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
    promotion: str = "direct"
    training_gpus: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str, default: str) -> str:
            return env.get(name) or default

        return cls(
            home=get("FLYWHEEL_HOME", cls.home),
            task_file=get("FLYWHEEL_TASK", ""),
            start_date=get("FLYWHEEL_START_DATE", DEFAULT_START_DATE),
            retrain_cron=get("FLYWHEEL_RETRAIN_CRON", DEFAULT_CRON),
            timezone=get("FLYWHEEL_TIMEZONE", DEFAULT_TIMEZONE),
            retrain_config=load_run_config(env.get("FLYWHEEL_RETRAIN_CONFIG")),
            retrain_status=DefaultScheduleStatus(
                get("FLYWHEEL_RETRAIN_DEFAULT_STATUS", "running").upper()
            ),
            feedback_url_from_env=bool(env.get("FLYWHEEL_FEEDBACK_URL")),
            feedback_min_new=int(get("FLYWHEEL_FEEDBACK_MIN_NEW", "100")),
            feedback_max_wait_minutes=float(get("FLYWHEEL_FEEDBACK_MAX_WAIT_MINUTES", "60")),
            feedback_interval_seconds=int(get("FLYWHEEL_FEEDBACK_INTERVAL_SECONDS", "30")),
            feedback_run_config=json.loads(get("FLYWHEEL_FEEDBACK_RUN_CONFIG", "{}")),
            feedback_sensor_status=DefaultSensorStatus.RUNNING
            if get("FLYWHEEL_FEEDBACK_SENSOR", "").lower() == "running"
            else DefaultSensorStatus.STOPPED,
            promotion=get("FLYWHEEL_PROMOTION", "direct").lower(),
            training_gpus=int(get("FLYWHEEL_TRAINING_GPUS", "0")),
        )


def build_defs(settings: Settings) -> Definitions:
    """The whole project for ``settings``."""
    # which days' labels mature, and so which raw days the lagged rates read: the task's (a YAML
    # read, no data)
    label_delay_days = load_task(settings.task_file).label_delay_days
    with _features_used_on_purpose():  # the partitioned assets and checks are built here
        partitions = daily_partitions(settings.start_date)
        raw_data, cleaned_features = build_data_assets(partitions, label_delay_days)
        checks = build_data_checks(raw_data, cleaned_features, partitions)
        live_performance, live_check = build_live_performance(partitions)
    home = FlywheelHome.at(settings.home)
    jobs = build_jobs(k8s_gpu_tags(settings.training_gpus))
    feedback_url: str | EnvVar = (
        EnvVar("FLYWHEEL_FEEDBACK_URL")  # may hold a password: resolved at run time
        if settings.feedback_url_from_env
        else home.feedback_url
    )
    return Definitions(
        assets=[
            raw_data,
            cleaned_features,
            user_feedback,
            live_performance,
            trained_model,
            evaluation_report,
            build_deployed_model(settings.promotion),
            shadow_evaluation,
        ],
        asset_checks=[*checks, live_check],
        jobs=jobs.all(),
        schedules=[
            build_nightly_retrain(
                jobs.nightly,
                first=dt.date.fromisoformat(settings.start_date),
                cron=settings.retrain_cron,
                timezone=settings.timezone,
                run_config=settings.retrain_config,
                default_status=settings.retrain_status,
                label_delay_days=label_delay_days,
            )
        ],
        sensors=[
            build_feedback_sensor(
                jobs.feedback,
                min_new_feedback=settings.feedback_min_new,
                max_wait_minutes=settings.feedback_max_wait_minutes,
                interval_seconds=settings.feedback_interval_seconds,
                run_config=settings.feedback_run_config,
                default_status=settings.feedback_sensor_status,
            ),
            # beside the feedback sensor, with its own cursor; on and off with it
            build_live_performance_sensor(
                jobs.live,
                first=dt.date.fromisoformat(settings.start_date),
                interval_seconds=settings.feedback_interval_seconds,
                default_status=settings.feedback_sensor_status,
            ),
            # beside them too: shadow_evaluation when feedback labels shadowed requests
            build_shadow_sensor(
                jobs.shadow,
                interval_seconds=settings.feedback_interval_seconds,
                default_status=settings.feedback_sensor_status,
            ),
        ],
        # One process per run: the steps form a chain, and a process per step would import
        # torch again for every step (seconds each; most of a 365-day backfill's time).
        executor=in_process_executor,
        resources={
            "storage": FlywheelStorage(home=str(home.root)),
            "task": TaskSource(task_file=settings.task_file),
            "json_io_manager": JsonIOManager(home=str(home.root)),
            "feedback": FeedbackStoreResource(url=feedback_url),
        },
    )


SETTINGS = Settings.from_env(os.environ)
defs = build_defs(SETTINGS)
