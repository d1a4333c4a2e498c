"""Data group: the source's rows per day, and the cleaned, labelled features per day.

Both are partitioned by day, so they are built for the partitions ``definitions.py`` chooses
(:func:`build_data_assets`).
"""

import datetime as dt
from collections.abc import Callable
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from assets.metadata import preview
from assets.partitions import partition_days
from pipeline.data.maturity import run_clock
from pipeline.data.sources import SourceError
from pipeline.data.storage import CachedReader
from pipeline.steps import build_features_day, ingest_day, keep_unassigned
from resources import FlywheelStorage, TaskSource

# cleaned_features[D] reads raw_data[D] and, for lagged rates, up to this many earlier days,
# ending the task's label_delay_days before D (the labels matured by D).
HISTORY_DAYS = 31


class FeaturesConfig(Config):
    """The clock of ``cleaned_features``: which days' batch labels have matured."""

    as_of: str = Field(
        default="",
        description="The run's clock (YYYY-MM-DD) for the task's label_delay_days; empty: today"
        " (UTC). For backtests and tests.",
    )


def _run_days(context: AssetExecutionContext, step: Callable[[Any], Any], what: str) -> list[Any]:
    """Runs ``step(day)`` for every day of the run; a bad day does not stop the good ones, and
    the run then fails naming each bad day and why."""
    done, failed = [], {}
    days = partition_days(context)
    every = max(10, len(days) // 10)  # about ten progress lines, however long the range
    for i, day in enumerate(days, 1):
        try:
            done.append(step(day))
        except (ValueError, RuntimeError, OSError) as err:
            failed[day.isoformat()] = str(err)
            context.log.error(f"{what} {day}: {err}")
        if len(days) > 1 and (i % every == 0 or i == len(days)):
            context.log.info(f"{what}: {i}/{len(days)} days done")
    if failed:
        raise Failure(
            description=f"{what} failed for {len(failed)} of {len(days)} day(s): "
            + "; ".join(f"{day}: {msg}" for day, msg in failed.items()),
            metadata={"failed_days": MetadataValue.json(failed)},
        )
    return done


def build_data_assets(
    partitions: DailyPartitionsDefinition, label_delay_days: int = 0
) -> tuple[AssetsDefinition, AssetsDefinition]:
    """``raw_data`` and ``cleaned_features`` over ``partitions``; ``cleaned_features[D]``
    depends on the raw days its lagged rates may read under the task's ``label_delay_days``."""

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="data",
        kinds={"python", "parquet"},
        tags={"layer": "raw"},
    )
    def raw_data(
        context: AssetExecutionContext, task: TaskSource, storage: FlywheelStorage
    ) -> MaterializeResult:
        """The source's rows of each day, unchanged, as Parquet."""
        source, store = task.source(), storage.partitions("raw_data")
        context.log.info(f"reading {source.describe()}")
        try:  # rows of no day: kept, and warned about
            unassigned = keep_unassigned(source, storage.layout.unassigned_file)
        except SourceError as err:  # a file that cannot be read: each day it holds says so
            unassigned, unreadable = None, str(err)
            context.log.error(f"raw_data: {err}")
        if unassigned and unassigned.rows:
            context.log.warning(
                f"{unassigned.rows} row(s) have no usable timestamp: kept in {unassigned.path}"
            )
        days = _run_days(context, lambda day: ingest_day(source, store, day), "raw_data")
        if unassigned is None:  # every day read, but the rows of no day could not be
            raise Failure(description=f"raw_data: the source rows of no day: {unreadable}")
        for r in days:
            context.add_asset_metadata(
                {
                    "dagster/row_count": r.rows,
                    "empty": r.rows == 0,
                    "columns": MetadataValue.json(r.columns),
                    "path": MetadataValue.path(str(store.path(r.day))),
                    "preview": preview(r.frame),
                },
                partition_key=r.day.isoformat(),
            )
        return MaterializeResult()

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        deps=[
            AssetDep(
                raw_data,
                partition_mapping=TimeWindowPartitionMapping(
                    start_offset=-(HISTORY_DAYS + label_delay_days),
                    allow_nonexistent_upstream_partitions=True,
                ),
            )
        ],
        group_name="data",
        kinds={"python", "parquet"},
        tags={"layer": "features"},
    )
    def cleaned_features(
        context: AssetExecutionContext,
        config: FeaturesConfig,
        task: TaskSource,
        storage: FlywheelStorage,
    ) -> MaterializeResult:
        """Typed rows of each day with the label (once matured) and lagged rates; bad rows
        quarantined beside."""
        spec, as_of = task.spec(), run_clock(config.as_of, dt.datetime.now(dt.UTC))
        raw, store = storage.partitions("raw_data"), storage.partitions("cleaned_features")
        if spec.max_lag_days > HISTORY_DAYS:
            raise Failure(f"lagged rates over {spec.max_lag_days} days: at most {HISTORY_DAYS}")
        if spec.lag_reach_days > HISTORY_DAYS + label_delay_days:
            raise Failure(
                f"the task's label_delay_days ({spec.label_delay_days}) is not the one the"
                f" definitions were built with ({label_delay_days}): reload the definitions"
            )
        reader = CachedReader(raw, spec.lag_reach_days)  # each raw day read once in this run
        step = lambda day: build_features_day(spec, raw, store, day, reader, as_of)  # noqa: E731
        for r in _run_days(context, step, "cleaned_features"):
            context.add_asset_metadata(
                {
                    "dagster/row_count": r.rows,
                    "empty": r.rows == 0,
                    "quarantined_rows": r.quarantined,
                    "quarantine_reasons": MetadataValue.json(r.quarantine_reasons),
                    "quarantine_path": MetadataValue.path(str(r.quarantine_path)),
                    "positive_rate": r.positive_rate,
                    "labelled": r.labelled,
                    "unlabelled_rows": r.unlabelled_rows,
                    "label_matures_on": str(r.label_matures_on),
                    "as_of": as_of.isoformat(),
                    "history_days_missing": MetadataValue.json(r.history_days_missing),
                    "preview": preview(r.frame),
                },
                partition_key=r.day.isoformat(),
            )
        return MaterializeResult()

    return raw_data, cleaned_features
