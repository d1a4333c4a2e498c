"""The layout of FLYWHEEL_HOME: every path under the one root."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.checks.verdicts import VerdictStore
from pipeline.data.storage import PartitionStore
from pipeline.home import FlywheelHome
from pipeline.model.registry import ModelRegistry


def test_every_path_is_under_the_root(tmp_path):
    home = FlywheelHome.at(tmp_path / "fw")
    root = tmp_path.resolve() / "fw"
    raw = home.partitions("raw_data")
    assert isinstance(raw, PartitionStore) and raw.root == root / "raw_data"
    assert home.partitions("cleaned_features").root == root / "cleaned_features"
    assert home.unassigned_file == root / "raw_data" / "unassigned.quarantine.parquet"
    verdicts = home.verdicts()
    assert isinstance(verdicts, VerdictStore) and verdicts.root == root / "checks"
    assert home.feedback_examples_file == root / "user_feedback" / "examples.parquet"
    assert home.feedback_quarantine_file == root / "user_feedback" / "quarantine.parquet"
    registry = home.registry()
    assert isinstance(registry, ModelRegistry) and registry.root == root / "models"
    assert registry.champion_file == root / "models" / "champion.json"
    assert home.asset_value_file(["trained_model"]) == root / "assets" / "trained_model.json"
    assert home.asset_value_file(["a", "b"]) == root / "assets" / "a" / "b.json"
    assert not root.exists()  # naming paths creates nothing


def test_the_unassigned_file_is_not_a_day_of_raw_data(tmp_path):
    home = FlywheelHome.at(tmp_path)
    home.unassigned_file.parent.mkdir(parents=True)
    home.unassigned_file.write_bytes(b"")
    assert home.partitions("raw_data").days() == []


def test_feedback_url_points_at_the_sqlite_file(tmp_path):
    home = FlywheelHome.at(tmp_path)
    assert home.feedback_url == f"sqlite:///{tmp_path.resolve() / 'feedback.sqlite'}"


def test_at_expands_the_user_and_makes_the_path_absolute(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert FlywheelHome.at("~/fw").root == tmp_path.resolve() / "fw"
    monkeypatch.chdir(tmp_path)
    home = FlywheelHome.at("rel/../fw")
    assert home.root == tmp_path.resolve() / "fw"
    assert home.root.is_absolute()
    assert FlywheelHome.at(Path("fw")) == home


def test_scratch_creates_the_folder(tmp_path):
    home = FlywheelHome.at(tmp_path)
    path = home.scratch("run-1")
    assert path == tmp_path / "scratch" / "run-1"
    assert path.is_dir()
    (path / "f").write_text("x")
    assert home.scratch("run-1") == path and (path / "f").exists()  # again: kept as it is


def test_a_home_is_frozen(tmp_path):
    home = FlywheelHome.at(tmp_path)
    with pytest.raises(AttributeError):
        home.root = tmp_path / "other"
