"""Training group: the challenger model, and its evaluation against the champion."""

import datetime as dt
import warnings
from pathlib import Path
from typing import Any

from dagster import (
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    PipesSubprocessClient,
    asset,
)
from pydantic import Field

from assets.metadata import from_pipes_metadata, plots_markdown
from pipeline.data.storage import read_parquet
from pipeline.evaluation import evaluate_version
from pipeline.model.ddp import TrainRequest, torchrun_command, version_metadata
from pipeline.model.params import TrainParams
from pipeline.steps import train_version
from resources import FlywheelStorage, TaskSource

_DEFAULTS = TrainParams()


class TrainingConfig(Config):
    """Hyperparameters of ``trained_model``; mirrors ``pipeline.model.params.TrainParams``."""

    epochs: int = Field(default=_DEFAULTS.epochs, description="Most epochs (early stopping).")
    batch_size: int = Field(default=_DEFAULTS.batch_size, description="Rows per batch.")
    learning_rate: float = Field(default=_DEFAULTS.learning_rate, description="AdamW rate.")
    weight_decay: float = Field(default=_DEFAULTS.weight_decay, description="AdamW decay.")
    hidden_sizes: list[int] = Field(
        default=_DEFAULTS.hidden_sizes, description="Widths of the MLP's hidden layers."
    )
    dropout: float = Field(default=_DEFAULTS.dropout, description="Dropout after each layer.")
    members: int = Field(
        default=_DEFAULTS.members,
        description="Independent wide-and-deep members averaged in the one network.",
    )
    patience: int = Field(
        default=_DEFAULTS.patience, description="Epochs without val_loss gain before stopping."
    )
    val_fraction: float = Field(
        default=_DEFAULTS.val_fraction,
        description="Latest share of training rows used for early stopping (split by time).",
    )
    refit: bool = Field(
        default=_DEFAULTS.refit,
        description="After early stopping, train afresh on every row (the validation slice"
        " too) for the epochs early stopping chose.",
    )
    window_days: int = Field(default=_DEFAULTS.window_days, description="Training days.")
    holdout_days: int = Field(
        default=_DEFAULTS.holdout_days,
        description="Latest days held out for evaluation; never seen by training.",
    )
    seed: int = Field(
        default=_DEFAULTS.seed, description="Random seed (training is deterministic)."
    )
    accelerator: str = Field(default=_DEFAULTS.accelerator, description="cpu, gpu or auto.")
    devices: int = Field(
        default=_DEFAULTS.devices,
        description="Devices (processes) per node; with more than one process in all, training"
        " runs as a torchrun job with Lightning's DDP, through Dagster Pipes.",
    )
    strategy: str = Field(
        default=_DEFAULTS.strategy,
        description="Lightning's strategy; auto: one device in-process, ddp for more processes.",
    )
    num_nodes: int = Field(
        default=_DEFAULTS.num_nodes,
        description="Machines; more than 1 needs a launcher per node (docs/operations.md).",
    )
    end_date: str = Field(
        default="",
        description="Last holdout day (YYYY-MM-DD); empty: the newest cleaned_features day.",
    )
    feedback_weight: float = Field(
        default=1.0,
        description="How many window rows each user_feedback example counts as; 0: ignore them.",
    )
    as_of: str = Field(
        default="",
        description="The run's clock (YYYY-MM-DD): batch labels of days within the task's"
        " label_delay_days of it are hidden; empty: the stored labels as they matured.",
    )
    min_train_days: int = Field(
        default=1,
        description="Fewest training days left after leaving out days whose latest blocking"
        " data check failed; fewer fails the run and the champion stays.",
    )

    def params(self) -> TrainParams:
        values = self.model_dump(exclude={"end_date", "feedback_weight", "min_train_days", "as_of"})
        return TrainParams(**values)


@asset(
    deps=["cleaned_features", "user_feedback"],
    group_name="training",
    kinds={"pytorch", "lightning"},
    io_manager_key="json_io_manager",
)
def trained_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    task: TaskSource,
    storage: FlywheelStorage,
) -> Output[dict[str, Any]]:
    """A challenger trained on the days before the holdout, saved as a model version."""
    end = dt.date.fromisoformat(config.end_date) if config.end_date else None
    as_of = dt.date.fromisoformat(config.as_of) if config.as_of else None
    layout, params = storage.layout, config.params()
    examples = layout.feedback_examples_file
    features = layout.partitions("cleaned_features")
    left_out = layout.verdicts().left_out(features.days())
    if params.world_size > 1:
        request = TrainRequest(
            home=str(layout.root), task=task.spec().to_mapping(), params=params.to_dict(),
            root_dir=str(layout.scratch(context.run_id)), end=config.end_date or None,
            extra_file=str(examples) if examples.is_file() else None,
            extra_weight=config.feedback_weight, left_out=left_out,
            min_train_days=config.min_train_days, as_of=config.as_of or None,
        )  # fmt: skip
        return _trained_with_torchrun(context, request)

    def on_epoch(row: dict[str, float]) -> None:
        context.log.info(f"epoch {row['epoch']}: val_loss {row['val_loss']:.4f}")

    result = train_version(
        task.spec(), features, layout.registry(), params, layout.scratch(context.run_id),
        end=end, on_epoch=on_epoch, raw=layout.partitions("raw_data"),
        extra=read_parquet(examples) if examples.is_file() else None,
        extra_weight=config.feedback_weight, left_out=left_out,
        min_train_days=config.min_train_days, as_of=as_of,
    )  # fmt: skip
    return Output(
        {"version": result.version, "path": str(result.path)},
        metadata=from_pipes_metadata(version_metadata(result)),
    )


def _trained_with_torchrun(
    context: AssetExecutionContext, request: TrainRequest
) -> Output[dict[str, Any]]:
    """Trains in a torchrun job started through Dagster Pipes: its rank 0 streams the epochs'
    logs and reports the version's metadata back to this run (docs/operations.md shows the same
    step on Kubernetes with PipesK8sClient)."""
    params = request.train_params
    path = request.write(Path(request.root_dir) / "train_request.json")
    context.log.info(f"training with {params.world_size} DDP processes (torchrun)")
    with warnings.catch_warnings():
        # Dagster's own Pipes session calls one of its preview APIs (expected_writer_count).
        warnings.filterwarnings("ignore", message=r".*expected_writer_count.*")
        invocation = PipesSubprocessClient().run(
            context=context, command=torchrun_command(params, path)
        )
    metadata = dict(invocation.get_materialize_result().metadata or {})
    if "version" not in metadata:
        raise RuntimeError(f"the torchrun job ({path}) ended without reporting a version")
    value = {"version": metadata["version"].value, "path": metadata["path"].value}
    return Output(value, metadata=metadata)


def _metrics_table(report: dict[str, Any]) -> str:
    names = ["roc_auc", "pr_auc", "log_loss", "brier", "ece", "accuracy", "precision", "recall",
             "f1", "positive_rate"]  # fmt: skip
    cols = {"challenger": report["challenger"], "champion": report["champion_metrics"],
            "prior": report["prior_baseline"]}  # fmt: skip
    header = "| metric | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    rows = []
    for n in names:
        cells = [f"{c[n]:.4f}" if c and n in c else "" for c in cols.values()]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return header + "\n".join(rows)


@asset(group_name="training", kinds={"pytorch", "matplotlib"}, io_manager_key="json_io_manager")
def evaluation_report(
    context: AssetExecutionContext,
    trained_model: dict[str, Any],
    task: TaskSource,
    storage: FlywheelStorage,
) -> Output[dict[str, Any]]:
    """The challenger and the champion scored on the same holdout days, with plots."""
    evaluation = evaluate_version(
        storage.partitions("cleaned_features"),
        storage.registry(),
        trained_model["version"],
        slice_columns=task.spec().slices,
    )
    report = evaluation.report
    ch = report["challenger"]
    context.log.info(f"challenger {report['version']}: ROC-AUC {ch['roc_auc']:.4f}")
    return Output(
        report,
        metadata={
            "version": report["version"],
            "champion": report["champion"] or "(none)",
            "roc_auc": ch["roc_auc"],
            "champion_roc_auc": (report["champion_metrics"] or {}).get("roc_auc"),
            "pr_auc": ch["pr_auc"],
            "log_loss": ch["log_loss"],
            "f1": ch["f1"],
            "dagster/row_count": report["rows"],
            "holdout_batch_rows": report["holdout_rows"]["batch"],
            "holdout_feedback_rows": report["holdout_rows"]["feedback"],
            "days_left_out": MetadataValue.json(report["days_left_out"]),
            "metrics": MetadataValue.md(_metrics_table(report)),
            "confusion_matrix": MetadataValue.json(ch["confusion_matrix"]),
            "report_path": MetadataValue.path(report["report_path"]),
            "plots": plots_markdown(evaluation.plots),
        },
    )
