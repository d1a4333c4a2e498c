"""Deployment group: the gate that decides which version is the champion."""

from typing import Any

from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from pipeline.gate import deploy
from resources import FlywheelStorage


class DeployConfig(Config):
    """How the gate decides."""

    min_auc_gain: float = Field(
        default=0.0, description="ROC-AUC the challenger must gain over the champion."
    )
    force: bool = Field(default=False, description="Promote regardless of the gate (recorded).")


@asset(group_name="deployment", kinds={"pytorch"}, io_manager_key="json_io_manager")
def deployed_model(
    context: AssetExecutionContext,
    config: DeployConfig,
    evaluation_report: dict[str, Any],
    storage: FlywheelStorage,
) -> Output[dict[str, Any]]:
    """The champion after the gate: the challenger if it earned it, else the one before."""
    registry = storage.registry()
    decision = deploy(registry, evaluation_report, config.min_auc_gain, config.force)
    context.log.info(decision.reason)
    return Output(
        decision.to_dict(),
        metadata={
            "champion": decision.champion or "(none)",
            "promoted": decision.promoted,
            "forced": decision.forced,
            "reason": decision.reason,
            "champion_path": MetadataValue.path(str(registry.champion_file)),
        },
    )
