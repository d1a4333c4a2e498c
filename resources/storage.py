from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pipeline.model.registry import ModelRegistry
from pipeline.data.storage import PartitionStore


class FlywheelStorage(ConfigurableResource):
    """Everything Flywheel writes: partitions, model versions and scratch space under one home."""

    home: str = Field(description="Folder for Flywheel's files (FLYWHEEL_HOME).")

    @property
    def root(self) -> Path:
        return Path(self.home).expanduser().resolve()

    def partitions(self, asset_name: str) -> PartitionStore:
        return PartitionStore(self.root / asset_name)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root / "models")

    def scratch(self, name: str) -> Path:
        """A folder for a run's temporary files (Lightning's ``default_root_dir``)."""
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path
