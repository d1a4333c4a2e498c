"""The daily partitions, defined once and imported by every partitioned asset."""

from __future__ import annotations

import datetime as dt
import os

from dagster import AssetExecutionContext, DailyPartitionsDefinition

START_DATE = os.environ.get("FLYWHEEL_START_DATE", "2025-01-01")

# One partition per UTC calendar day; the newest partition is yesterday (a complete day).
daily_partitions = DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")


def partition_days(context: AssetExecutionContext) -> list[dt.date]:
    """The days of this run: one partition, or every day of a single-run backfill's range."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]
