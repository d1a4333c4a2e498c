"""Feedback group: labelled examples from users' feedback (the sensor that starts its runs is in
``assets/sensors.py``)."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from assets.metadata import preview
from pipeline.data.storage import write_parquet_atomic
from pipeline.feedback.examples import clean_feedback
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource


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
        store.require_schema()
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
