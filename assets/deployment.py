"""Deployment group: the gate that decides which version is the champion."""

from dataclasses import fields
from typing import Any

from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from assets.metadata import md_text
from pipeline.evaluation import evaluate_version
from pipeline.gate import Decision, GatePolicy, deploy
from resources import FlywheelStorage, TaskSource

_GATE = GatePolicy()


class DeployConfig(Config):
    """How the gate decides; mirrors ``pipeline.gate.GatePolicy``."""

    min_auc_gain: float = Field(
        default=_GATE.min_auc_gain,
        description="Same data: the lower bound of the ROC-AUC gain must be above this.",
    )
    max_auc_loss: float = Field(
        default=_GATE.max_auc_loss,
        description="Newer data: promoted unless the lower bound of the gain is at most -this.",
    )
    max_log_loss_gain: float = Field(
        default=_GATE.max_log_loss_gain,
        description="Newer data: refused when the lower bound of the extra log loss is above"
        " this (same data: above 0).",
    )
    confidence: float = Field(default=_GATE.confidence, description="Of the intervals.")
    resamples: int = Field(default=_GATE.resamples, description="Paired bootstrap resamples.")
    seed: int = Field(default=_GATE.seed, description="Seed of the bootstrap.")
    min_holdout_rows: int = Field(
        default=_GATE.min_holdout_rows,
        description="Fewer labelled holdout rows than this: no promotion (except force).",
    )
    min_slice_rows: int = Field(
        default=_GATE.min_slice_rows, description="Slice values with fewer rows are not judged."
    )
    max_slice_drop: float = Field(
        default=_GATE.max_slice_drop,
        description="No slice value's ROC-AUC may fall more than this below the champion's.",
    )
    force: bool = Field(default=False, description="Promote regardless of the gate (recorded).")

    def policy(self) -> GatePolicy:
        return GatePolicy(**{f.name: getattr(self, f.name) for f in fields(GatePolicy)})


def _comparison_md(decision: Decision) -> str:
    rows = [c for c in (decision.comparison, decision.log_loss) if c is not None]
    if not rows:
        return "(no comparison: " + md_text(decision.rule) + ")"
    lines = ["| metric | challenger - other | CI low | CI high | confidence | rows |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {c.metric} | {c.difference:+.4f} | {c.ci_low:+.4f} | {c.ci_high:+.4f} |"
        f" {c.confidence:.0%} | {c.n} |"
        for c in rows
    ]
    return "\n".join([*lines, "", md_text(rows[0].method)])


def _slices_md(decision: Decision) -> str:
    if not decision.slices:
        return "(no slices compared)"
    lines = ["| slice | rows | challenger AUC | champion AUC | verdict |", "|---|---|---|---|---|"]
    lines += [
        f"| {md_text(s.column)}={md_text(s.value)} | {s.rows} | {s.challenger_auc:.4f} |"
        f" {s.champion_auc:.4f} | {md_text(s.verdict)} |"
        for s in decision.slices
    ]
    return "\n".join(lines)


@asset(group_name="deployment", kinds={"pytorch"}, io_manager_key="json_io_manager")
def deployed_model(
    context: AssetExecutionContext,
    config: DeployConfig,
    evaluation_report: dict[str, Any],
    storage: FlywheelStorage,
    task: TaskSource,
) -> Output[dict[str, Any]]:
    """The champion after the gate: the challenger if it earned it, else the one before.

    When another run promoted a champion after this challenger's evaluation, the challenger
    is scored again against the new one before the gate decides."""
    registry = storage.registry()

    def evaluate_again() -> dict[str, Any]:
        context.log.info("the champion changed since the evaluation: comparing again")
        features = storage.partitions("cleaned_features")
        version = evaluation_report["version"]
        return evaluate_version(features, registry, version, task.spec().slices).report

    done = deploy(registry, evaluation_report, config.policy(), config.force, evaluate_again)
    context.log.info(done.reason)
    auc = done.decision.comparison
    return Output(
        done.to_dict(),
        metadata={
            "champion": done.champion or "(none)",
            "promoted": done.promoted,
            "forced": done.forced,
            "rule": done.decision.rule,
            "reason": done.reason,
            "auc_gain": auc.difference if auc else None,
            "auc_gain_ci_low": auc.ci_low if auc else None,
            "auc_gain_ci_high": auc.ci_high if auc else None,
            "comparison": MetadataValue.md(_comparison_md(done.decision)),
            "slices": MetadataValue.md(_slices_md(done.decision)),
            "champion_path": MetadataValue.path(str(registry.champion_file)),
        },
    )
