"""The gate: whether a challenger becomes the champion, and the promotion itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.model.registry import ModelRegistry


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(report: dict[str, Any], min_auc_gain: float = 0.0, force: bool = False) -> Decision:
    """The gate: promote when there is no champion, or the challenger's ROC-AUC is at least the
    champion's plus ``min_auc_gain`` and above the prior baseline; ``force`` overrides.

    ``report`` is the evaluation report (``evaluation.json``).
    """
    auc = report["challenger"]["roc_auc"]
    prior_auc = report["prior_baseline"]["roc_auc"]
    champion, champ = report["champion"], report["champion_metrics"]
    if force:
        return Decision(True, f"forced by run config (challenger ROC-AUC {auc:.4f})")
    if not auc > prior_auc:
        return Decision(False, f"challenger ROC-AUC {auc:.4f} is not above the prior {prior_auc}")
    if champion is None or champion == report["version"]:
        return Decision(True, f"no champion yet; challenger ROC-AUC {auc:.4f} beats the prior")
    if report["champion_error"]:
        return Decision(
            False,
            f"champion {champion} cannot be loaded ({report['champion_error']}); it stays until"
            " you roll back or promote with force: true",
        )
    need = champ["roc_auc"] + min_auc_gain
    if auc >= need:
        return Decision(
            True,
            f"challenger ROC-AUC {auc:.4f} >= champion {champ['roc_auc']:.4f} + {min_auc_gain}",
        )
    return Decision(
        False,
        f"champion {champion} stays: challenger ROC-AUC {auc:.4f} < champion"
        f" {champ['roc_auc']:.4f} + {min_auc_gain}",
    )


@dataclass(frozen=True)
class Deployment:
    """What the gate did: the champion after it, and why."""

    champion: str | None
    challenger: str
    promoted: bool
    forced: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "promoted": self.promoted,
            "forced": self.forced,
            "reason": self.reason,
        }


def deploy(
    registry: ModelRegistry, report: dict[str, Any], min_auc_gain: float = 0.0, force: bool = False
) -> Deployment:
    """Applies the gate; on promotion replaces the champion pointer atomically."""
    decision = decide(report, min_auc_gain, force)
    version = report["version"]
    if decision.promote:
        registry.promote(version, reason=decision.reason, forced=force)
    return Deployment(
        champion=registry.champion(),
        challenger=version,
        promoted=decision.promote,
        forced=force and decision.promote,
        reason=decision.reason,
    )
