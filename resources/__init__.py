"""Dagster resources: where Flywheel keeps its files, which task it runs, and an IO manager."""

from resources.feedback import FeedbackStoreResource
from resources.io import JsonIOManager
from resources.storage import FlywheelStorage
from resources.task import TaskSource

__all__ = ["FeedbackStoreResource", "FlywheelStorage", "JsonIOManager", "TaskSource"]
