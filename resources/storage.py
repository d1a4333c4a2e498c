from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from pipeline.checks.verdicts import VerdictStore
from pipeline.data.storage import PartitionStore
from pipeline.home import FlywheelHome
from pipeline.model.registry import ModelRegistry


class FlywheelStorage(ConfigurableResource):
    """Everything Flywheel writes, under one home (its layout: :mod:`pipeline.home`)."""

    home: str = Field(description="Folder for Flywheel's files (FLYWHEEL_HOME).")

    @property
    def layout(self) -> FlywheelHome:
        return FlywheelHome.at(self.home)

    @property
    def root(self) -> Path:
        return self.layout.root

    def partitions(self, asset_name: str) -> PartitionStore:
        return self.layout.partitions(asset_name)

    def registry(self) -> ModelRegistry:
        return self.layout.registry()

    def verdicts(self) -> VerdictStore:
        return self.layout.verdicts()

    def scratch(self, name: str) -> Path:
        return self.layout.scratch(name)
