from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field


class JsonIOManager(ConfigurableIOManager):
    """Stores the small outputs of unpartitioned assets (model version, report, decision) as
    JSON under ``<home>/assets``, so they are readable by people and by the ``flywheel`` CLI."""

    home: str = Field(description="Folder for Flywheel's files (FLYWHEEL_HOME).")

    def _path(self, context: InputContext | OutputContext) -> Path:
        if context.has_asset_partitions:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: JsonIOManager is for unpartitioned assets"
            )
        return (
            Path(self.home).expanduser().resolve()
            / "assets"
            / ("/".join(context.asset_key.path) + ".json")
        )

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        os.replace(tmp, path)

    def load_input(self, context: InputContext) -> Any:
        path = self._path(context)
        if not path.is_file():
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has not been materialized yet ({path})"
            )
        return json.loads(path.read_text())
