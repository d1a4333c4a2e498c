"""Data checks beside raw_data and cleaned_features: Great Expectations suites, per day.

Each asset has two checks, run by one op so that one validation answers both: a blocking ERROR
check (schema breaks, null labels, over-threshold quarantine) and a WARN check (drift and soft
limits). Both are partitioned like their asset. A one-day run returns one ``AssetCheckResult``
per check; a single-run backfill over many days reports one evaluation per day and check, so the
UI shows which day failed. Every day's verdict is also written under
``<FLYWHEEL_HOME>/checks/<asset>/<day>.json``, where ``trained_model`` reads it.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    Output,
    multi_asset_check,
)

from assets.data import cleaned_features, raw_data
from assets.partitions import daily_partitions
from pipeline.checks import (
    ERROR,
    WARN,
    DayVerdict,
    VerdictStore,
    champion_vocabularies,
    check_feature_days,
    check_raw_days,
)
from resources import FlywheelStorage, TaskSource

SEVERITY = {ERROR: AssetCheckSeverity.ERROR, WARN: AssetCheckSeverity.WARN}


def verdict_store(storage: FlywheelStorage) -> VerdictStore:
    """Where each day's latest verdict is kept (read by ``trained_model``)."""
    return VerdictStore(storage.root / "checks")


def _spec(asset, name: str, blocking: bool, description: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        name,
        asset=asset,
        blocking=blocking,
        description=description,
        partitions_def=daily_partitions,
    )


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:200]


def _metadata(verdict: DayVerdict, severity: str, store: VerdictStore) -> dict[str, Any]:
    own = [r for r in verdict.results if r["severity"] == severity]
    failed = [r for r in own if not r["success"]]
    table = "| expectation | column | observed | unexpected | sample bad values |\n"
    table += "|---|---|---|---|---|\n"
    table += "\n".join(
        f"| {_cell(r['rule'])} | {_cell(r['column'])} | {_cell(r['observed_value'])} |"
        f" {r['unexpected_count']} | {_cell(r['sample_unexpected'])} |"
        for r in failed
    )
    # A passing day lists its expectations briefly (a backfill stores one event per day and
    # check); a failing one in full: observed value, unexpected count, sample bad values.
    brief = "\n".join(f"- {r['rule']}: {_cell(r['observed_value'])}" for r in own)
    return {
        "day": verdict.day.isoformat(),
        "rows": verdict.rows,
        "failed_expectations": len(failed),
        "failures": MetadataValue.md(table if failed else "(none)"),
        "expectations": MetadataValue.json(own) if failed else MetadataValue.md(brief),
        "verdict_path": MetadataValue.path(str(store.path(verdict.asset, verdict.day))),
    }


def _report(
    context: AssetCheckExecutionContext, verdicts: list[DayVerdict], store: VerdictStore
) -> Iterator[Any]:
    """One result per check and day: ``AssetCheckResult`` in a one-partition run, else per-day
    evaluations (an ``AssetCheckResult`` cannot name its partition inside a range run)."""
    single = context.has_partition_key  # False for a range run, even of one day
    for spec in context.check_specs:
        severity = ERROR if spec.blocking else WARN
        bad = [
            f"{v.day}: {'; '.join(v.reasons(severity))}" for v in verdicts if v.failures(severity)
        ]
        if bad:
            context.log.warning(f"{spec.name} failed on {len(bad)} day(s): " + " | ".join(bad))
        for v in verdicts:
            fields = {
                "passed": v.passed(severity),
                "severity": SEVERITY[severity],
                "metadata": _metadata(v, severity, store),
                "description": "; ".join(v.reasons(severity))[:1000] or None,
            }
            if single:
                yield AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, **fields)
            else:
                yield AssetCheckEvaluation(
                    asset_key=spec.asset_key,
                    check_name=spec.name,
                    blocking=spec.blocking,
                    partition=v.day.isoformat(),
                    **fields,
                )
        if not single:
            assets_def = context.op_execution_context.assets_def
            yield Output(None, output_name=assets_def.get_output_name_for_asset_check_key(spec.key))


def _days(context: AssetCheckExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


@multi_asset_check(
    specs=[
        _spec(
            raw_data,
            "raw_data_schema",
            True,
            "Every column the task names exists with a usable type (blocking).",
        ),
        _spec(
            raw_data,
            "raw_data_quality",
            False,
            "Timestamps on the day, unique keys, row count, null shares and ranges (warning).",
        ),
    ],
    compute_kind="great_expectations",
)
def raw_data_checks(
    context: AssetCheckExecutionContext, task: TaskSource, storage: FlywheelStorage
) -> Iterator[Any]:
    """Great Expectations on each day of raw_data, one validation for the whole run."""
    store = verdict_store(storage)
    raw = storage.partitions("raw_data")
    verdicts = check_raw_days(task.spec(), raw, store, _days(context), context.run.run_id)
    yield from _report(context, verdicts, store)


@multi_asset_check(
    specs=[
        _spec(
            cleaned_features,
            "cleaned_features_valid",
            True,
            "Labels 0/1 and never null, model columns only, finite numbers, quarantine under"
            " 5% (blocking).",
        ),
        _spec(
            cleaned_features,
            "cleaned_features_drift",
            False,
            "Categories outside the champion's training vocabulary (warning).",
        ),
    ],
    compute_kind="great_expectations",
)
def cleaned_features_checks(
    context: AssetCheckExecutionContext, task: TaskSource, storage: FlywheelStorage
) -> Iterator[Any]:
    """Great Expectations on each day of cleaned_features, one validation for the whole run."""
    store = verdict_store(storage)
    features = storage.partitions("cleaned_features")
    vocabularies = champion_vocabularies(storage.registry())
    verdicts = check_feature_days(
        task.spec(), features, store, _days(context), vocabularies, run_id=context.run.run_id
    )
    yield from _report(context, verdicts, store)
