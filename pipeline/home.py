"""The layout of ``FLYWHEEL_HOME``: every path Flywheel writes there has its one owner here.

::

    raw_data/<day>.parquet                  the source's rows of each day
    raw_data/unassigned.quarantine.parquet  source rows that belong to no day
    cleaned_features/<day>.parquet          typed rows with the label (+ <day>.quarantine.parquet)
    checks/<asset>/<day>.json               each day's latest data-check verdict
    user_feedback/examples.parquet          feedback as cleaned training rows (+ quarantine.parquet)
    models/                                 the model registry (versions, champion.json)
    feedback.sqlite                         the default feedback store
    assets/<asset>.json                     the values of the unpartitioned assets
    scratch/<run id>/                       a run's temporary files
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.checks.verdicts import VerdictStore
from pipeline.data.storage import PartitionStore
from pipeline.feedback.schema import sqlite_url
from pipeline.model.registry import ModelRegistry

DEFAULT_HOME = ".flywheel"


@dataclass(frozen=True)
class FlywheelHome:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> FlywheelHome:
        """The home at ``path`` (``~`` expanded, made absolute)."""
        return cls(Path(path).expanduser().resolve())

    def partitions(self, asset: str) -> PartitionStore:
        """The daily Parquet files of a partitioned asset (``raw_data``, ``cleaned_features``)."""
        return PartitionStore(self.root / asset)

    @property
    def unassigned_file(self) -> Path:
        """Where raw_data keeps the source rows whose timestamp is missing or does not parse."""
        return self.root / "raw_data" / "unassigned.quarantine.parquet"

    def verdicts(self) -> VerdictStore:
        return VerdictStore(self.root / "checks")

    @property
    def feedback_examples_file(self) -> Path:
        """``user_feedback``'s rows (``trained_model`` reads them)."""
        return self.root / "user_feedback" / "examples.parquet"

    @property
    def feedback_quarantine_file(self) -> Path:
        return self.root / "user_feedback" / "quarantine.parquet"

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root / "models")

    @property
    def feedback_url(self) -> str:
        """The default feedback store: a SQLite file in the home."""
        return sqlite_url(self.root / "feedback.sqlite")

    def asset_value_file(self, key_path: list[str]) -> Path:
        """The JSON value of an unpartitioned asset (its key's parts as folders)."""
        return self.root / "assets" / ("/".join(key_path) + ".json")

    def scratch(self, name: str) -> Path:
        """A folder for a run's temporary files (Lightning's ``default_root_dir``), created."""
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path
