"""One piece of feedback as it arrives (from the API or a file): what it must be, and the errors
that say which field is wrong."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

MAX_SOURCE_LENGTH = 100


class FeedbackError(ValueError):
    """Feedback that cannot be stored; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownPrediction(FeedbackError):
    """Feedback for a prediction id that the store has never logged."""


class ConflictingFeedback(FeedbackError):
    """The same source already gave a different label for this prediction."""


class SchemaError(RuntimeError):
    """The database's schema is missing or newer than this code; the message says which."""


def validate_feedback(item: Any) -> tuple[str, int, str]:
    """``(prediction_id, label, source)`` from a mapping, or FeedbackError naming the field."""
    if not isinstance(item, dict):
        raise FeedbackError("body", "feedback must be an object")
    pid = item.get("prediction_id")
    if pid is None or (isinstance(pid, float) and math.isnan(pid)) or pid == "":
        raise FeedbackError("prediction_id", "field required")
    if not isinstance(pid, str) or len(pid) > 32:
        raise FeedbackError("prediction_id", "must be a prediction id string")
    label = item.get("label")
    if isinstance(label, float) and label in (0.0, 1.0):
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
        raise FeedbackError("label", "must be 0 or 1")
    source = item.get("source", "api")
    if source is None or (isinstance(source, float) and math.isnan(source)):
        source = "api"
    if not isinstance(source, str) or not source or len(source) > MAX_SOURCE_LENGTH:
        raise FeedbackError("source", f"must be a non-empty string of at most {MAX_SOURCE_LENGTH}")
    return pid, label, source


def read_feedback_file(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file of feedback rows (prediction_id, label, source)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"prediction_id": str, "source": str})
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise FeedbackError("file", f"{path} is neither .csv nor .parquet")
