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

The home is a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``,
``memory://...``): :func:`home_path` makes every path under it, a plain :class:`pathlib.Path`
on local disk (as fast as before) or a universal-pathlib ``UPath`` on object storage, and the
stores below take either. S3's credentials and endpoint come from the standard variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``),
which botocore reads itself. Two things cannot live on object storage: the default SQLite
feedback store (give a feedback URL) and Lightning's scratch folder (kept in the local temporary
folder).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.checks.verdicts import VerdictStore
from pipeline.data.storage import PartitionStore, is_local
from pipeline.feedback.schema import sqlite_url
from pipeline.model.registry import ModelRegistry

DEFAULT_HOME = ".flywheel"

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def home_path(location: Any) -> Path:
    """The path type of everything under ``FLYWHEEL_HOME``: a local folder (``~`` expanded,
    made absolute, ``file://`` stripped) as a plain ``pathlib.Path``, an fsspec URL as a
    universal-pathlib ``UPath`` (typed ``Path`` here: it has the same interface).

    S3 listings are not cached: other processes (runs, the serving app) write the same bucket.
    """
    if not isinstance(location, str | Path):  # already a UPath
        return location
    text = str(location)
    if not _URL.match(text) or text.startswith("file://"):
        return Path(text.removeprefix("file://")).expanduser().resolve()
    from upath import UPath  # fsspec loads only for a home on object storage

    options = {"use_listings_cache": False} if text.startswith(("s3://", "s3a://")) else {}
    return UPath(text, **options)


@dataclass(frozen=True)
class FlywheelHome:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> FlywheelHome:
        """The home at ``path``: a local folder or an fsspec URL (see :func:`home_path`)."""
        return cls(home_path(path))

    @property
    def local(self) -> bool:
        return is_local(self.root)

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
        """The default feedback store: a SQLite file in the home (local homes only)."""
        if not self.local:
            raise ValueError(
                f"FLYWHEEL_HOME is {self.root}: a SQLite feedback store cannot live on object"
                " storage; set FLYWHEEL_FEEDBACK_URL (PostgreSQL, or a local SQLite file)"
            )
        return sqlite_url(self.root / "feedback.sqlite")

    def asset_value_file(self, key_path: list[str]) -> Path:
        """The JSON value of an unpartitioned asset (its key's parts as folders)."""
        return self.root / "assets" / ("/".join(key_path) + ".json")

    def scratch(self, name: str) -> Path:
        """A local folder for a run's temporary files (Lightning's ``default_root_dir``),
        created: under the home on local disk, else in the local temporary folder."""
        base = self.root if self.local else Path(tempfile.gettempdir()) / "flywheel"
        path = base / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path
