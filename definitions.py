"""Flywheel's one ``Definitions``: assets, jobs and the resources chosen from the environment.

Environment (all optional):
    FLYWHEEL_HOME        where Flywheel writes its files (default: ``.flywheel/`` here)
    FLYWHEEL_TASK        a YAML task file (default: the built-in flights task)
    FLYWHEEL_START_DATE  first daily partition (default 2025-01-01; read in assets/partitions.py)
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job

from assets.data import cleaned_features, raw_data
from assets.deployment import deployed_model
from assets.partitions import daily_partitions
from assets.training import evaluation_report, trained_model
from resources import FlywheelStorage, JsonIOManager, TaskSource

PROJECT_DIR = Path(__file__).resolve().parent
FLYWHEEL_HOME = os.environ.get("FLYWHEEL_HOME") or str(PROJECT_DIR / ".flywheel")
FLYWHEEL_TASK = os.environ.get("FLYWHEEL_TASK", "")

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
    assets=[raw_data, cleaned_features, trained_model, evaluation_report, deployed_model],
    jobs=[data_job, training_job],
    resources={
        "storage": FlywheelStorage(home=FLYWHEEL_HOME),
        "task": TaskSource(task_file=FLYWHEEL_TASK),
        "json_io_manager": JsonIOManager(home=FLYWHEEL_HOME),
    },
)
