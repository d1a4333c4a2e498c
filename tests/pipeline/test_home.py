"""The layout of FLYWHEEL_HOME: every path under the one root."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
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


@pytest.mark.parametrize(
    "location", ["s3://bucket/home", "memory://flywheel/home", "gs://bucket/deep/home"]
)
def test_an_fsspec_url_is_object_storage_not_a_local_folder(location, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = FlywheelHome.at(location)
    assert not isinstance(home.root, Path) and not home.local
    assert str(home.root).rstrip("/") == location  # round-trips through the resources' strings
    assert FlywheelHome.at(str(home.root)).root == home.root
    assert str(home.registry().champion_file) == f"{location}/models/champion.json"
    assert str(home.partitions("raw_data").path(dt.date(2025, 3, 1))) == (
        f"{location}/raw_data/2025-03-01.parquet"
    )
    assert list(tmp_path.iterdir()) == []  # no folder named "s3:" in the working directory


def test_a_local_home_stays_a_plain_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for location in ("fw", f"file://{tmp_path}/fw", tmp_path / "fw"):
        home = FlywheelHome.at(location)
        assert type(home.root) is type(tmp_path) and home.local
        assert home.root == tmp_path.resolve() / "fw"


def test_a_home_on_object_storage_keeps_feedback_and_scratch_elsewhere(memory_root):
    home = FlywheelHome.at(str(memory_root))
    with pytest.raises(ValueError, match="FLYWHEEL_FEEDBACK_URL"):
        home.feedback_url
    scratch = home.scratch("run-1")
    assert isinstance(scratch, Path) and scratch.is_dir()  # Lightning writes local files


def test_every_store_of_a_memory_home_writes_and_reads_there(memory_root):
    """Partitions, quarantine files, verdicts and asset values under a memory:// home."""
    from pipeline.checks.results import DayVerdict
    from pipeline.data.storage import write_json_atomic

    home = FlywheelHome.at(str(memory_root))
    day = dt.date(2025, 3, 1)
    raw = home.partitions("raw_data")
    raw.write(day, pd.DataFrame({"x": [1, 2]}), quarantine=pd.DataFrame({"reason": ["bad"]}))
    assert raw.days() == [day] and raw.exists(day)
    assert raw.read(day)["x"].tolist() == [1, 2]
    assert memory_root.joinpath("raw_data", "2025-03-01.quarantine.parquet").is_file()
    verdicts = home.verdicts()
    verdicts.write(DayVerdict("raw_data", day, 2, []), run_id="r1")
    assert verdicts.read("raw_data", day)["run_id"] == "r1"
    assert verdicts.read("raw_data", day + dt.timedelta(days=1)) is None
    write_json_atomic(home.asset_value_file(["trained_model"]), {"version": "v1"})
    assert json.loads(memory_root.joinpath("assets", "trained_model.json").read_text()) == {
        "version": "v1"
    }
    names = sorted(p.path.removeprefix(memory_root.path) for p in memory_root.rglob("*"))
    assert not any(".tmp" in n for n in names)  # no temporary files left on the store
