from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from pipeline.data.storage import write_json_atomic
from pipeline.home import FlywheelHome


class JsonIOManager(ConfigurableIOManager):
    """Stores the small outputs of unpartitioned assets (model version, report, decision) as
    JSON under ``<home>/assets``, so they are readable by people and by the ``flywheel`` CLI."""

    home: str = Field(description="Folder for Flywheel's files (FLYWHEEL_HOME).")

    def _path(self, context: InputContext | OutputContext) -> Path:
        if context.has_asset_partitions:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: JsonIOManager is for unpartitioned assets"
            )
        return FlywheelHome.at(self.home).asset_value_file(list(context.asset_key.path))

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        write_json_atomic(self._path(context), obj, indent=2, sort_keys=True, default=str)

    def load_input(self, context: InputContext) -> Any:
        path = self._path(context)
        if not path.is_file():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized yet ({path})"
            )
        return json.loads(path.read_text())
