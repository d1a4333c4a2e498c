"""Data checks beside raw_data and cleaned_features: Great Expectations suites, per day.

Each asset has one check, partitioned like it, answering every expectation of its suite with one
validation for the whole run. A day fails at its worst failed expectation's severity, chosen on
purpose per expectation: ERROR (a schema break, a null label, an over-threshold quarantine)
blocks the rest of the run; WARN (drift and soft limits) only warns. A one-day run returns an
``AssetCheckResult``; a single-run backfill over many days reports one evaluation per day, so the
UI shows which day failed. Every day's verdict is also written under
``<FLYWHEEL_HOME>/checks/<asset>/<day>.json``, where ``trained_model`` reads it. The checks are
partitioned like their assets, so they are built for them (:func:`build_data_checks`).
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetsDefinition,
    DailyPartitionsDefinition,
    MetadataValue,
    Output,
    asset_check,
)

from assets.metadata import md_text
from assets.partitions import partition_days
from pipeline.checks.results import ERROR, WARN, DayVerdict
from pipeline.checks.shift import Champion
from pipeline.checks.verdicts import VerdictStore, check_feature_days, check_raw_days
from resources import FlywheelStorage, TaskSource

SEVERITY = {ERROR: AssetCheckSeverity.ERROR, WARN: AssetCheckSeverity.WARN}
LOGGED_DAYS = 10  # failed days named in the run log's warning


def _cell(value: Any) -> str:
    return md_text(value)[:200]


def _brief(verdict: DayVerdict) -> str:
    """A passing day: how many expectations passed, and the observed values worth a look (a
    share of unexpected rows under its limit, the row count against the trailing median)."""
    noted = [
        f"- {r.rule}: {_cell(r.observed_value)}"
        for r in verdict.results
        if isinstance(r.observed_value, dict)
        or (isinstance(r.observed_value, float) and r.observed_value > 0)
    ]
    head = f"All {len(verdict.results)} expectations passed"
    return head + (", observed:\n" + "\n".join(noted) if noted else ".")


def _metrics(verdict: DayVerdict) -> dict[str, Any]:
    """The verdict's numbers as float metadata on every day (NaN where undefined), so that the
    UI plots them over partitions (cleaned_features: ``label_rate`` and ``max_psi``)."""
    return {
        k: MetadataValue.float(float("nan") if v is None else float(v))
        for k, v in verdict.metrics.items()
    }


def _metadata(verdict: DayVerdict, store: VerdictStore) -> dict[str, Any]:
    failed = verdict.failures()
    table = "| severity | expectation | column | observed | unexpected | sample bad values |\n"
    table += "|---|---|---|---|---|---|\n"
    table += "\n".join(
        f"| {r.severity} | {_cell(r.rule)} | {_cell(r.column)} |"
        f" {_cell(r.observed_value)} | {r.unexpected_count} |"
        f" {_cell(r.sample_unexpected)} |"
        for r in failed
    )
    # A failing day lists every expectation in full (severity, observed value, unexpected
    # count, sample bad values); a passing one briefly, as a backfill stores one event per day.
    return {
        "day": verdict.day.isoformat(),
        "rows": verdict.rows,
        "failed_expectations": len(failed),
        "failures": MetadataValue.md(table if failed else "(none)"),
        "expectations": (
            MetadataValue.json([r.to_dict() for r in verdict.results])
            if failed
            else MetadataValue.md(_brief(verdict))
        ),
        "verdict_path": MetadataValue.path(str(store.path(verdict.asset, verdict.day))),
        **_metrics(verdict),
    }


def _report(
    context: AssetCheckExecutionContext, verdicts: list[DayVerdict], store: VerdictStore
) -> Iterator[Any]:
    """One result per day: ``AssetCheckResult`` in a one-partition run, else per-day
    evaluations (an ``AssetCheckResult`` cannot name its partition inside a range run). A day
    fails at its worst failed expectation's severity: ERROR blocks, WARN only warns."""
    (spec,) = context.check_specs
    bad = [f"{v.day}: {'; '.join(v.reasons())}" for v in verdicts if v.failures()]
    if bad:  # a long range may fail on many days: the first ones here, every one in the UI
        more = f" | ... and {len(bad) - LOGGED_DAYS} more day(s)" if len(bad) > LOGGED_DAYS else ""
        context.log.warning(
            f"{spec.name} failed on {len(bad)} day(s): " + " | ".join(bad[:LOGGED_DAYS]) + more
        )
    single = context.has_partition_key  # False for a range run, even of one day
    for v in verdicts:
        severity = v.worst_failed
        fields = {
            "passed": severity is None,
            "severity": SEVERITY[severity or ERROR],
            "metadata": _metadata(v, store),
            "description": "; ".join(v.reasons())[:1000] or None,
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


def build_data_checks(
    raw_data: AssetsDefinition,
    cleaned_features: AssetsDefinition,
    partitions: DailyPartitionsDefinition,
) -> tuple[AssetChecksDefinition, AssetChecksDefinition]:
    """The checks of ``raw_data`` and ``cleaned_features``, partitioned like them."""

    @asset_check(
        asset=raw_data,
        blocking=True,
        partitions_def=partitions,
        compute_kind="great_expectations",
        description="ERROR, blocking: every column the task names exists, numeric ones hold"
        " numbers. WARN: timestamps parse and fall on the day, unique keys, row count near the"
        " trailing median, the task's ranges, allowed values and null shares, finite numbers.",
    )
    def raw_data_expectations(
        context: AssetCheckExecutionContext, task: TaskSource, storage: FlywheelStorage
    ) -> Iterator[Any]:
        """Great Expectations on each day of raw_data, one validation for the whole run."""
        store, layout = storage.verdicts(), storage.layout
        verdicts = check_raw_days(
            task.spec(), layout.partitions("raw_data"), store, partition_days(context),
            context.run.run_id, unassigned=layout.unassigned_file,
        )  # fmt: skip
        yield from _report(context, verdicts, store)

    @asset_check(
        asset=cleaned_features,
        blocking=True,
        partitions_def=partitions,
        compute_kind="great_expectations",
        description="ERROR, blocking: labels 0/1 and never null, every model column and no"
        " excluded one, finite numbers, at most 5% of the day's rows quarantined; labels that"
        " cannot be real: one class alone on a day of 100+ labelled rows when the trailing 28"
        " days held both, or the champion's ROC-AUC on the day under 0.35 (inverted labels)."
        " WARN: categories outside the champion's training vocabulary, a label rate more than"
        " 0.10 outside the trailing 28 days' range of daily rates, a feature's PSI against the"
        " champion's training distribution more than 0.2 above its training days' own.",
    )
    def cleaned_features_expectations(
        context: AssetCheckExecutionContext, task: TaskSource, storage: FlywheelStorage
    ) -> Iterator[Any]:
        """Great Expectations on each day of cleaned_features, one validation for the whole run."""
        store = storage.verdicts()
        features = storage.partitions("cleaned_features")
        champion = Champion.load(storage.registry())  # once per run: torch only if one exists
        verdicts = check_feature_days(
            task.spec(), features, store, partition_days(context),
            run_id=context.run.run_id, champion=champion,
        )  # fmt: skip
        yield from _report(context, verdicts, store)

    return raw_data_expectations, cleaned_features_expectations
