from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from pipeline.data.sources import Source, make_source
from pipeline.task import TaskSpec, load_task


class TaskSource(ConfigurableResource):
    """The task spec (from a YAML task file, or the built-in flights task) and its source."""

    task_file: str = Field(
        default="", description="Path of a YAML task file (FLYWHEEL_TASK); empty: built-in."
    )

    def spec(self) -> TaskSpec:
        return load_task(self.task_file or None)

    def source(self) -> Source:
        return make_source(self.spec())
