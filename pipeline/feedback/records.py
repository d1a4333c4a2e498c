"""One piece of feedback as it arrives (from the API or a file): what it must be, and the errors
that say which field is wrong; a file of feedback, read row by row; and what the store answers
(:class:`StoredFeedback`, :class:`FeedbackSummary`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MAX_SOURCE_LENGTH = 100
FILE_COLUMNS = ("prediction_id", "label")  # and optionally source


@dataclass(frozen=True)
class StoredFeedback:
    id: int
    prediction_id: str
    label: int
    source: str
    created: bool  # False: the same feedback was already stored


@dataclass(frozen=True)
class FeedbackSummary:
    """What arrived after a cursor: how many rows, the newest id, the oldest row's time."""

    count: int
    newest_id: int | None
    oldest_at: dt.datetime | None


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


class FeedbackFileError(ValueError):
    """A feedback file that cannot be read at all; the message names the file and why."""


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
    """A CSV (UTF-8) or Parquet file of feedback rows (prediction_id, label, source), its
    values as the file holds them (a CSV's as text), for :func:`feedback_rows`.

    Raises:
        FeedbackFileError: the file is missing, empty, not valid UTF-8, not readable as its
            kind, or lacks a column; the message names the file and, where it can, the place.
    """
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise FeedbackFileError(f"{path} is neither .csv nor .parquet")
    if not path.exists():
        raise FeedbackFileError(f"{path} does not exist")
    if not path.is_file():
        raise FeedbackFileError(f"{path} is not a file")
    frame = _read_csv(path) if suffix == ".csv" else _read_parquet(path)
    missing = [c for c in FILE_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise FeedbackFileError(f"{path} has no column {missing[0]!r} (it has: {found})")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    from pipeline.data.encoding import first_bad_bytes

    bad = first_bad_bytes(path, "utf-8-sig")
    if bad is not None:
        offset, line, before, reason = bad
        raise FeedbackFileError(
            f"{path} is not valid UTF-8 at byte {offset} (line {line}, column"
            f" {len(before) + 1}): {reason}"
        )
    try:
        # Every column as text: a label such as "yes" is then one row's problem, not the file's.
        return pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise FeedbackFileError(f"{path} is empty (not even a header row)") from None
    except (pd.errors.ParserError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeedbackFileError(f"{path} cannot be read as CSV: {first}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FeedbackFileError(f"{path} cannot be read as Parquet: {first}") from None


def feedback_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The file's rows as mappings for :func:`validate_feedback`: missing values as None, and a
    label written as text (``"1"``, ``"0.0"``) as the number it spells; any other label is left
    as it is, for the validation to refuse that row alone."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:
        label = row.get("label")
        if isinstance(label, str) and label.strip() in _TEXT_LABELS:
            row["label"] = _TEXT_LABELS[label.strip()]
    return rows


_TEXT_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}


def rejected_file(path: Path) -> Path:
    """Where an import of ``path`` puts its rejected rows: ``<name>.rejected.csv`` beside it,
    or, if that exists, the first free ``<name>.rejected.<n>.csv``: an earlier import's
    rejected rows are never overwritten."""
    candidate = path.with_name(f"{path.stem}.rejected.csv")
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.rejected.{n}.csv")
    return candidate
