"""Deployment group: the gate that decides which version is the champion, and the shadow
evaluation that decides on live traffic (a candidate's promotion, a probation's rollback)."""

from dataclasses import fields
from typing import Any, Literal

from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    Config,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from assets.metadata import md_text
from pipeline.evaluation import evaluate_version
from pipeline.gate import Decision, GatePolicy
from pipeline.live_promotion import ShadowOutcome, evaluate_shadow
from pipeline.promotion import deploy
from pipeline.shadow import ShadowPolicy
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource

_GATE = GatePolicy()
_SHADOW = ShadowPolicy()
PROMOTIONS = ("direct", "shadow")


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
    probation_labels: int = Field(
        default=_SHADOW.probation_labels,
        description="After a promotion, the previous champion is scored in shadow until this"
        " many of the new champion's requests have feedback (then judged once).",
    )

    def policy(self) -> GatePolicy:
        return GatePolicy(**{f.name: getattr(self, f.name) for f in fields(GatePolicy)})


class ShadowConfig(Config):
    """How ``shadow_evaluation`` decides; mirrors ``pipeline.shadow.ShadowPolicy`` and the
    interval's part of ``pipeline.gate.GatePolicy``."""

    shadow_min_labels: int = Field(
        default=_SHADOW.shadow_min_labels,
        description="A candidate is judged once this many shadowed requests have feedback.",
    )
    shadow_max_days: float = Field(
        default=_SHADOW.shadow_max_days,
        description="A candidate undecided this many days after it became one is rejected.",
    )
    probation_labels: int = Field(
        default=_SHADOW.probation_labels,
        description="A probation is judged once this many of the champion's requests have"
        " feedback.",
    )
    confidence: float = Field(default=_GATE.confidence, description="Of the intervals.")
    resamples: int = Field(default=_GATE.resamples, description="Paired bootstrap resamples.")
    seed: int = Field(default=_GATE.seed, description="Seed of the bootstrap.")

    def policies(self) -> tuple[GatePolicy, ShadowPolicy]:
        gate = GatePolicy(confidence=self.confidence, resamples=self.resamples, seed=self.seed)
        shadow = ShadowPolicy(**{f.name: getattr(self, f.name) for f in fields(ShadowPolicy)})
        return gate, shadow


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


def build_deployed_model(promotion: str = "direct"):
    """``deployed_model`` whose ``promotion`` setting defaults to ``promotion`` (definitions.py
    passes ``FLYWHEEL_PROMOTION``)."""
    if promotion not in PROMOTIONS:
        raise ValueError(f"promotion must be one of {PROMOTIONS}, not {promotion!r}")
    chosen = promotion  # the class body below defines its own `promotion`

    class DeployRunConfig(DeployConfig):
        promotion: Literal["direct", "shadow"] = Field(
            default=chosen,
            description="direct: a challenger that passes the gate becomes the champion; shadow:"
            " it becomes the candidate, scored in shadow until shadow_evaluation decides (the"
            " first model and a forced one are always promoted directly).",
        )

    @asset(group_name="deployment", kinds={"pytorch"}, io_manager_key="json_io_manager")
    def deployed_model(
        context: AssetExecutionContext,
        config: DeployRunConfig,
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

        done = deploy(registry, evaluation_report, config.policy(), config.force, evaluate_again,
                      config.promotion, config.probation_labels)  # fmt: skip
        context.log.info(done.reason)
        if done.candidate:
            context.log.info(f"{done.candidate} is the candidate, scored in shadow beside"
                             f" {done.champion}")  # fmt: skip
        auc = done.decision.comparison
        return Output(
            done.to_dict(),
            metadata={
                "champion": done.champion or "(none)",
                "promoted": done.promoted,
                "forced": done.forced,
                "promotion": config.promotion,
                "candidate": done.candidate or "(none)",
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

    return deployed_model


def _shadow_metadata(out: ShadowOutcome) -> dict[str, Any]:
    auc, loss = (out.decision.comparison, out.decision.log_loss) if out.decision else (None, None)
    return {
        "action": out.action,
        "reason": out.reason,
        "champion": out.champion or "(none)",
        "champion_before": out.champion_before or "(none)",
        "shadow": out.shadow or "(none)",
        "role": out.role or "(none)",
        "labels": out.decision.labels if out.decision else 0,
        "auc_gain": auc.difference if auc else None,
        "auc_gain_ci_low": auc.ci_low if auc else None,
        "auc_gain_ci_high": auc.ci_high if auc else None,
        "log_loss_gain": loss.difference if loss else None,
        "log_loss_gain_ci_low": loss.ci_low if loss else None,
        "log_loss_gain_ci_high": loss.ci_high if loss else None,
    }


@asset(
    group_name="deployment",
    kinds={"python", "sql"},
    deps=["deployed_model"],
    io_manager_key="json_io_manager",
)
def shadow_evaluation(
    context: AssetExecutionContext,
    config: ShadowConfig,
    storage: FlywheelStorage,
    feedback: FeedbackStoreResource,
) -> Output[dict[str, Any]]:
    """The version in shadow judged on live traffic: a candidate promoted or rejected, a
    champion on probation kept or rolled back, on the same served requests with feedback."""
    registry, store = storage.registry(), feedback.store()
    gate, shadow = config.policies()
    if (store.schema_version() or 0) < 2:  # nothing was logged in shadow before version 2
        why = "the feedback store has no shadow columns yet (`flywheel serve` upgrades it)"
        outcome = ShadowOutcome("none", why, None, None)
    else:
        store.require_schema()
        outcome = evaluate_shadow(registry, store, gate, shadow)
    context.log.info(outcome.reason)
    metadata = _shadow_metadata(outcome)
    if outcome.champion_changed:
        if outcome.action == "rollback":
            context.log.warning(
                f"automatic rollback: champion {outcome.champion_before} -> {outcome.champion}"
                f" ({outcome.reason})"
            )
        # the champion changed here, not in a deployed_model run: its history in the UI says so
        context.log_event(
            AssetMaterialization(
                asset_key="deployed_model",
                description=f"{outcome.action} by shadow_evaluation: {outcome.reason}",
                metadata={
                    **metadata,
                    "promoted": outcome.action == "promote",
                    "rule": f"shadow_evaluation: {outcome.action}",
                    "champion_path": MetadataValue.path(str(registry.champion_file)),
                },
            )
        )
    return Output(outcome.to_dict(), metadata=metadata)
