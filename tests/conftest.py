"""Shared fixtures: every test's files live under its own tmp_path, never the working tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import memory_home, write_churn_task
from tests.servers import s3_home, s3_session

__all__ = ["s3_home", "s3_session"]  # one S3 server (moto's) per session, for any test


@pytest.fixture
def churn_task(tmp_path: Path) -> Path:
    """A task file over a folder of the user's own Parquet files (one file per week)."""
    return write_churn_task(tmp_path)


@pytest.fixture
def memory_root():
    """A fresh ``memory://`` folder (object storage in the test's process), removed after."""
    with memory_home() as root:
        yield root


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


# A real PostgreSQL database per test, for any test that asks for it.
from tests.postgres import postgres_db  # noqa: E402, F401
