"""Flywheel's one ``Definitions``: assets, jobs and the resources chosen from the environment.

Environment (all optional):
    FLYWHEEL_HOME        where Flywheel writes its files (default: ``.flywheel/`` here)
    FLYWHEEL_TASK        a YAML task file (default: the built-in flights task)
    FLYWHEEL_START_DATE  first daily partition (default 2025-01-01; read in assets/partitions.py)
    FLYWHEEL_RETRAIN_CRON, FLYWHEEL_TIMEZONE, FLYWHEEL_RETRAIN_CONFIG
                         the nightly retrain (read in assets/automation.py)
    FLYWHEEL_FEEDBACK_URL  SQLAlchemy URL of the feedback store (default: SQLite in FLYWHEEL_HOME)
    FLYWHEEL_FEEDBACK_MIN_NEW, FLYWHEEL_FEEDBACK_MAX_WAIT_MINUTES,
    FLYWHEEL_FEEDBACK_INTERVAL_SECONDS
                         the feedback sensor's thresholds (defaults 100 rows, 60 min, 30 s)
    FLYWHEEL_FEEDBACK_RUN_CONFIG  JSON run config merged into each feedback run's
    FLYWHEEL_FEEDBACK_SENSOR  "running" starts the feedback sensor without a click
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    define_asset_job,
    in_process_executor,
)

from assets.automation import nightly_job, nightly_retrain
from assets.checks import cleaned_features_expectations, raw_data_expectations
from assets.data import cleaned_features, raw_data
from assets.deployment import deployed_model
from assets.feedback import build_feedback_sensor, feedback_job, user_feedback
from assets.partitions import daily_partitions
from assets.training import evaluation_report, trained_model
from pipeline.feedback.store import sqlite_url
from resources import FeedbackStoreResource, FlywheelStorage, JsonIOManager, TaskSource

PROJECT_DIR = Path(__file__).resolve().parent
FLYWHEEL_HOME = os.environ.get("FLYWHEEL_HOME") or str(PROJECT_DIR / ".flywheel")
FLYWHEEL_TASK = os.environ.get("FLYWHEEL_TASK", "")
feedback_store = FeedbackStoreResource(
    url=EnvVar("FLYWHEEL_FEEDBACK_URL")  # may hold a password: resolved at run time
    if os.environ.get("FLYWHEEL_FEEDBACK_URL")
    else sqlite_url(FLYWHEEL_HOME)
)
feedback_sensor = build_feedback_sensor(
    min_new_feedback=int(os.environ.get("FLYWHEEL_FEEDBACK_MIN_NEW", "100")),
    max_wait_minutes=float(os.environ.get("FLYWHEEL_FEEDBACK_MAX_WAIT_MINUTES", "60")),
    interval_seconds=int(os.environ.get("FLYWHEEL_FEEDBACK_INTERVAL_SECONDS", "30")),
    run_config=json.loads(os.environ.get("FLYWHEEL_FEEDBACK_RUN_CONFIG") or "{}"),
    default_status=DefaultSensorStatus.RUNNING
    if os.environ.get("FLYWHEEL_FEEDBACK_SENSOR", "").lower() == "running"
    else DefaultSensorStatus.STOPPED,
)

data_job = define_asset_job(
    "data_job",
    selection=AssetSelection.assets(raw_data, cleaned_features),
    partitions_def=daily_partitions,
    description="Fill daily partitions of raw_data and cleaned_features.",
)
training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.assets(trained_model, evaluation_report, deployed_model),
    description="Train a challenger, evaluate it against the champion, and run the gate.",
)

defs = Definitions(
    assets=[
        raw_data,
        cleaned_features,
        user_feedback,
        trained_model,
        evaluation_report,
        deployed_model,
    ],
    asset_checks=[raw_data_expectations, cleaned_features_expectations],
    jobs=[data_job, training_job, nightly_job, feedback_job],
    schedules=[nightly_retrain],
    sensors=[feedback_sensor],
    # One process per run (ARCHITECTURE.md): the steps form a chain, and a process per step
    # would import torch again for every step (seconds each; most of a 365-day backfill's time).
    executor=in_process_executor,
    resources={
        "storage": FlywheelStorage(home=FLYWHEEL_HOME),
        "task": TaskSource(task_file=FLYWHEEL_TASK),
        "json_io_manager": JsonIOManager(home=FLYWHEEL_HOME),
        "feedback": feedback_store,
    },
)
