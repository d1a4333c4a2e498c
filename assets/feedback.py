"""Feedback group: labelled examples from users' feedback, and the served model's live
performance per day (the sensors that start their runs are in ``assets/sensors.py``)."""

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
    asset_check,
)
from pydantic import Field

from assets.metadata import preview
from assets.partitions import partition_days
from pipeline.data.storage import write_parquet_atomic
from pipeline.feedback.examples import clean_feedback
from pipeline.feedback.queries import scored_predictions
from pipeline.gate import GatePolicy
from pipeline.live import day_metrics, live_rows
from pipeline.live_check import judge_live, newest_labelled
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource

LIVE = "live_performance"  # its files: live_performance/<day>.parquet, one row per prediction


class FeedbackConfig(Config):
    """Which feedback ``user_feedback`` includes."""

    upto_id: int = Field(
        default=0, description="Newest feedback id to include (the sensor sets it); 0: all."
    )


@asset(
    group_name="feedback",
    kinds={"python", "sql", "parquet"},
    tags={"layer": "features"},
)
def user_feedback(
    context: AssetExecutionContext,
    config: FeedbackConfig,
    task: TaskSource,
    storage: FlywheelStorage,
    feedback: FeedbackStoreResource,
) -> Output[None]:
    """Labelled examples from feedback joined to their logged inputs, cleaned like the days."""
    store = feedback.store()
    if store.schema_version() is None:  # nothing served yet: no feedback, not an error
        context.log.info(f"{store!r} has no tables yet (`flywheel serve` creates them)")
        raw = pd.DataFrame()
    else:
        store.require_schema(oldest=1)  # reads no column newer than version 1
        raw = store.labelled_examples(config.upto_id or None)
    result = clean_feedback(task.spec(), raw, storage.partitions("raw_data"))
    path = storage.layout.feedback_examples_file
    write_parquet_atomic(result.features, path)
    write_parquet_atomic(result.quarantine, storage.layout.feedback_quarantine_file)
    rows = result.features
    by_label = {str(k): int(v) for k, v in rows["label"].value_counts().sort_index().items()}
    by_source = {str(k): int(v) for k, v in rows["feedback_source"].value_counts().items()}
    context.log.info(f"{len(rows)} feedback examples, {len(result.quarantine)} quarantined")
    return Output(
        None,
        metadata={
            "dagster/row_count": len(rows),
            "quarantined_rows": len(result.quarantine),
            "by_label": MetadataValue.json(by_label),
            "by_source": MetadataValue.json(by_source),
            "newest_feedback_id": result.newest_feedback_id or 0,
            "path": MetadataValue.path(str(path)),
            "preview": preview(rows),
        },
    )


def _version_table(figures: list) -> str:
    names = ["predictions", "labelled", "labelled_share", "roc_auc", "log_loss", "brier", "ece",
             "positive_rate", "mean_score"]  # fmt: skip
    lines = ["| model_version | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in figures:
        cells = [("" if v is None else f"{v:.4g}") for v in (getattr(m, n) for n in names)]
        lines.append(f"| {m.model_version} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_live_performance(partitions: DailyPartitionsDefinition):
    """``live_performance`` over ``partitions`` and its check against the champion's holdout."""

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        deps=["cleaned_features"],  # the same day: its matured batch labels
        group_name="feedback",
        kinds={"python", "sql", "parquet"},
        tags={"layer": "monitoring"},
    )
    def live_performance(
        context: AssetExecutionContext,
        task: TaskSource,
        storage: FlywheelStorage,
        feedback: FeedbackStoreResource,
    ) -> MaterializeResult:
        """The served model versions on each day's labelled predictions (feedback, or the
        matured batch label): counts, ROC-AUC, log loss, Brier, calibration, rates."""
        spec, store = task.spec(), feedback.store()
        scored = scored_predictions(store) if store.schema_version() is not None else None
        features, out = storage.partitions("cleaned_features"), storage.partitions(LIVE)
        registry = storage.registry()
        for day in partition_days(context):
            batch = features.read(day) if features.exists(day) else None
            rows = live_rows(spec, scored if scored is not None else pd.DataFrame(), day, batch)
            out.write(day, rows)
            every = day_metrics(rows)
            served = max(every[1:], key=lambda m: m.predictions, default=None)
            holdout = _holdout_auc(registry, served.model_version) if served else None
            context.add_asset_metadata(
                {
                    **{k: v for k, v in every[0].to_dict().items() if k != "model_version"},
                    "dagster/row_count": len(rows),
                    "holdout_roc_auc": holdout,
                    "by_version": MetadataValue.md(_version_table(every[1:]) if served else ""),
                    "by_version_json": MetadataValue.json([m.to_dict() for m in every[1:]]),
                },
                partition_key=day.isoformat(),
            )
        return MaterializeResult()

    @asset_check(asset=live_performance, blocking=False)
    def live_auc_holds(storage: FlywheelStorage) -> AssetCheckResult:
        """WARN: the champion's live ROC-AUC over the newest days with labels is significantly
        below its holdout ROC-AUC (independent bootstraps, 95%)."""
        registry, store = storage.registry(), storage.partitions(LIVE)
        champion = registry.champion()
        if champion is None:
            return AssetCheckResult(passed=True, metadata={"reason": "no champion yet"})
        files = {d: store.path(d) for d in store.days()[-60:]}
        live, days = newest_labelled(files, champion)
        verdict = judge_live(live, days, champion, registry.path(champion), GatePolicy())
        c = verdict.comparison
        return AssetCheckResult(
            passed=verdict.passed,
            severity=AssetCheckSeverity.WARN,
            description=verdict.reason,
            metadata={
                "reason": verdict.reason, "champion": champion, "labelled": verdict.labelled,
                "days": MetadataValue.json(verdict.days),
                "auc_difference": c.difference if c else None,
                "ci_low": c.ci_low if c else None, "ci_high": c.ci_high if c else None,
            },
        )  # fmt: skip

    return live_performance, live_auc_holds


def _holdout_auc(registry, version: str) -> float | None:
    try:
        return registry.read_json(version, "evaluation.json")["challenger"]["roc_auc"]
    except (OSError, KeyError, ValueError):  # a version not evaluated (yet): no figure
        return None
