"""Shared fixtures: every test's files live under its own tmp_path, never the working tree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

CHURN_START = dt.date(2025, 3, 1)


def make_churn_frame(days: int, rows_per_day: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small synthetic data set of a user's own: will a subscriber churn?

    The label depends on the plan, the region and the usage, so a model can learn it.
    """
    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    day_offsets = np.repeat(np.arange(days), rows_per_day)
    seconds = rng.integers(0, 86400, n)
    times = (
        pd.Timestamp(CHURN_START, tz="UTC")
        + pd.to_timedelta(day_offsets, "D")
        + pd.to_timedelta(seconds, "s")
    )
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    usage = rng.gamma(2.0, 10.0, n)
    tenure = rng.integers(1, 60, n).astype(float)
    logit = 0.5 + 2.0 * (plan == "basic") - 0.1 * usage + 1.0 * (region == "south") - 0.03 * tenure
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "YES", "NO")
    return pd.DataFrame(
        {
            "event_time": times,
            "customer_id": np.arange(n),
            "plan": plan,
            "region": region,
            "usage": usage.round(2),
            "tenure": tenure,
            "support_calls_after": rng.integers(0, 5, n),  # known only after the outcome
            "churned": churned,
        }
    )


CHURN_TASK = {
    "name": "churn",
    "source": {"kind": "files", "path": "data"},
    "timestamp": "event_time",
    "label": {"column": "churned", "positive_values": ["YES"]},
    "features": {
        "categorical": ["plan", "region"],
        "numeric": ["usage", "tenure"],
        "calendar": ["day_of_week"],
        "lagged_rates": [{"by": ["region"], "days": 3}],
    },
    "exclude": ["support_calls_after", "customer_id"],
}
# The data-check keys a task file may add (``key:`` and ``checks:``), as the check tests use them.
CHURN_CHECKS = {
    "key": ["customer_id"],
    "checks": {
        "usage": {"range": [0, 500]},
        "plan": {"allowed": ["basic", "plus", "pro"]},
        "churned": {"allowed": ["YES", "NO"]},
    },
}


def write_churn_task(root: Path, **task_keys) -> Path:
    """Three weeks of churn data as one Parquet file per week under ``root/task/data``, and a
    task file over them (``CHURN_TASK`` with ``task_keys`` added); returns the task file."""
    data = root / "task" / "data"
    data.mkdir(parents=True)
    frame = make_churn_frame(days=21)
    week = (frame["event_time"] - pd.Timestamp(CHURN_START, tz="UTC")).dt.days // 7
    for w, part in frame.groupby(week):
        part.to_parquet(data / f"week-{w}.parquet", index=False)
    path = root / "task" / "churn.yaml"
    path.write_text(yaml.safe_dump({**CHURN_TASK, **task_keys}))
    return path


@pytest.fixture
def churn_task(tmp_path: Path) -> Path:
    """A task file over a folder of the user's own Parquet files (one file per week)."""
    return write_churn_task(tmp_path)


@pytest.fixture
def flywheel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FLYWHEEL_HOME and DAGSTER_HOME under tmp_path; returns FLYWHEEL_HOME."""
    home = tmp_path / "flywheel"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    monkeypatch.setenv("FLYWHEEL_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    return home


def flywheel_resources(home: Path, task_file: Path | str = "") -> dict:
    """The resources definitions.py would choose, pointed at ``home`` and ``task_file``."""
    from resources import FlywheelStorage, JsonIOManager, TaskSource

    return {
        "storage": FlywheelStorage(home=str(home)),
        "task": TaskSource(task_file=str(task_file)),
        "json_io_manager": JsonIOManager(home=str(home)),
    }


# A real PostgreSQL database per test, for any test that asks for it.
from tests.postgres import postgres_db  # noqa: E402, F401
