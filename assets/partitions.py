"""The daily partitions, defined once (from the start date that ``definitions.py`` reads) and
passed to every partitioned asset, check and schedule."""

from __future__ import annotations

import datetime as dt

from dagster import AssetCheckExecutionContext, AssetExecutionContext, DailyPartitionsDefinition

DEFAULT_START_DATE = "2025-01-01"

# Dagster's run tags for a run over a range of partitions (a single-run backfill); a run with
# both is one run over every partition between them.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(start_date: str = DEFAULT_START_DATE) -> DailyPartitionsDefinition:
    """One partition per UTC calendar day from ``start_date``; the newest is yesterday (a
    complete day)."""
    return DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def partition_days(context: AssetExecutionContext | AssetCheckExecutionContext) -> list[dt.date]:
    """The days of this run: one partition, or every day of a single-run backfill's range."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """The tags of one run over the days ``first..last``."""
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}
