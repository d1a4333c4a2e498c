"""The gate: whether a challenger becomes the champion, decided as a reviewer would sign it.

Challenger and champion are scored on the same holdout rows (``holdout_scores.parquet``, written
by the evaluation) and compared **paired**: the difference in ROC-AUC and in log loss, each with
a confidence interval from a paired bootstrap over rows (the same resampled rows for both
models, seeded). A bootstrap rather than DeLong's test: the same resamples give the log-loss
interval too, and the whole computation is a few matrix products (vectorized: a 6k-row holdout
with 1,000 resamples takes tens of milliseconds; ``benchmarks/gate.py`` measures it).

Two rules, named in the reason:

* **same data** (the challenger's training window ends where the champion's does, or earlier):
  promote only when the lower bound of the AUC gain is above ``min_auc_gain``, so a retrain that
  brings nothing new never replaces the champion. Champion and challenger are then two draws
  of the same training: the question is whether the challenger beats the champion beyond the
  difference two seeds make, so the interval also carries the retraining noise between two
  retrains, measured from the spread of the challenger's ensemble members' AUCs
  (``members_columns``) with Student's t for the members' few degrees of freedom (the rows'
  bootstrap alone is narrower than the difference two seeds make);
* **newer data** (its window ends later): promote unless it is significantly worse, that is
  when the lower bound is above ``-max_auc_loss``, so nightly and feedback retrains keep the
  model fresh without swapping on noise. The interval is the rows' alone: the margin is the
  tolerance for noise.

In both, log loss must not be significantly worse: on the same data, the lower bound of the
challenger's extra log loss must not be above 0; on newer data, not above ``max_log_loss_gain``
(the same tolerance the AUC rule gives: a model trained a day later differs in calibration by
about as much as a retrain with another seed). No slice may regress by more than
``max_slice_drop``. With no champion the
challenger must be significantly better than the prior baseline. Fewer than
``min_holdout_rows`` labelled holdout rows: no promotion. ``force`` overrides, and is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data.storage import read_parquet
from pipeline.model.comparison import (
    Comparison,
    RetrainingNoise,
    SliceResult,
    compare,
    retraining_noise,
    slice_table,
    widened,
)
from pipeline.model.registry import ModelRegistry

SCORES_FILE = "holdout_scores.parquet"  # y, challenger, champion (or NaN), the slice columns
MEMBER_PREFIX = {"challenger": "challenger_member_", "champion": "champion_member_"}


def members_columns(model: str, count: int) -> list[str]:
    """The scores file's columns for ``model``'s ensemble members (one score column each)."""
    return [f"{MEMBER_PREFIX[model]}{j}" for j in range(count)]


def _members(scores: pd.DataFrame, model: str) -> np.ndarray:
    columns = [c for c in scores.columns if c.startswith(MEMBER_PREFIX[model])]
    return scores[columns].to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class GatePolicy:
    """How the gate decides; ``assets.deployment.DeployConfig`` mirrors it."""

    min_auc_gain: float = 0.0
    max_auc_loss: float = 0.005
    max_log_loss_gain: float = 0.005
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    min_holdout_rows: int = 500
    min_slice_rows: int = 200
    max_slice_drop: float = 0.02


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    # forced, too_few_rows, one_class, no_champion, champion_unloadable, same_data, newer_data,
    # stale_comparison
    rule: str
    comparison: Comparison | None = None
    log_loss: Comparison | None = None
    slices: list[SliceResult] = field(default_factory=list)
    # how much two retrains alike differ in AUC, from the challenger's members (same data only)
    retraining_noise: RetrainingNoise | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "rule": self.rule,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "log_loss_comparison": self.log_loss.to_dict() if self.log_loss else None,
            "slices": [s.to_dict() for s in self.slices],
            "retraining_noise": self.retraining_noise.to_dict() if self.retraining_noise else None,
        }


# -- the decision --------------------------------------------------------------------------------
def _fmt(c: Comparison) -> str:
    return f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] ({c.confidence:.0%}, n={c.n})"


def decide(
    scores: pd.DataFrame,
    policy: GatePolicy,
    champion: str | None,
    newer_data: bool,
    prior: float,
    champion_error: str | None = None,
    force: bool = False,
) -> Decision:
    """The gate on the holdout ``scores`` (columns ``y``, ``challenger``, ``champion``, then the
    task's slice columns): see the module's docstring for the rules."""
    y = scores["y"].to_numpy(dtype=np.float64)
    ch = scores["challenger"].to_numpy(dtype=np.float64)
    n = len(y)
    if force:
        return Decision(
            True, f"forced by run config (n={n} holdout rows; no test applied)", "forced"
        )
    if n < policy.min_holdout_rows:
        return Decision(
            False,
            f"only {n} labelled holdout rows, fewer than min_holdout_rows"
            f" {policy.min_holdout_rows}: too little evidence to promote",
            "too_few_rows",
        )
    if y.min() == y.max():
        return Decision(False, f"the {n} holdout rows hold one class only: no AUC", "one_class")
    if champion is None:
        auc, loss = compare(y, ch, np.full(n, prior), policy)
        if auc.ci_low > 0.0:
            why = f"no champion yet; challenger beats the prior: ROC-AUC gain {_fmt(auc)}"
            return Decision(True, why, "no_champion", auc, loss)
        why = "no champion yet, but the challenger is not significantly better than the prior:"
        return Decision(False, f"{why} ROC-AUC gain {_fmt(auc)}", "no_champion", auc, loss)
    if champion_error:
        return Decision(
            False,
            f"champion {champion} cannot be loaded ({champion_error}); it stays until you roll"
            " back or promote with force: true",
            "champion_unloadable",
        )
    champ = scores["champion"].to_numpy(dtype=np.float64)
    auc, loss = compare(y, ch, champ, policy)
    members = tuple(MEMBER_PREFIX.values())
    slice_columns = [
        c
        for c in scores.columns
        if c not in ("y", "challenger", "champion") and not c.startswith(members)
    ]
    slices = slice_table(y, ch, champ, {c: scores[c].to_numpy() for c in slice_columns}, policy)
    rule = "newer_data" if newer_data else "same_data"
    noise = None
    if not newer_data:
        noise = retraining_noise(y, _members(scores, "challenger"))
        auc = widened(auc, noise) if noise is not None else auc
    found = dict(comparison=auc, log_loss=loss, slices=slices, retraining_noise=noise)
    stays = f"champion {champion} stays:"
    # The overall AUC rule first, then log loss, then the slices: each can only refuse.
    if newer_data and not auc.ci_low > -policy.max_auc_loss:
        why = f"{stays} newer data, but the challenger is significantly worse: ROC-AUC gain"
        return Decision(False, f"{why} {_fmt(auc)}, lower bound <= {-policy.max_auc_loss}", rule,
                        **found)  # fmt: skip
    if not newer_data and not auc.ci_low > policy.min_auc_gain:
        why = f"{stays} same data and no significant gain: ROC-AUC gain {_fmt(auc)}"
        return Decision(False, f"{why}, lower bound <= {policy.min_auc_gain}", rule, **found)
    log_loss_margin = policy.max_log_loss_gain if newer_data else 0.0
    if loss.ci_low > log_loss_margin:
        why = f"{stays} the challenger's log loss is significantly worse, {_fmt(loss)}"
        return Decision(False, f"{why}, lower bound above {log_loss_margin}", rule, **found)
    regressed = [s for s in slices if s.verdict == "regressed"]
    if regressed:
        names = ", ".join(
            f"{s.column}={s.value} ({s.challenger_auc:.4f} vs {s.champion_auc:.4f}, {s.rows} rows)"
            for s in regressed
        )
        why = f"{stays} the challenger regresses by more than {policy.max_slice_drop} AUC on"
        return Decision(False, f"{why} {names}", rule, **found)
    if newer_data:
        why = f"newer data, not significantly worse: ROC-AUC gain {_fmt(auc)}"
        return Decision(True, f"{why}, lower bound above {-policy.max_auc_loss}", rule, **found)
    why = f"same data, significantly better: ROC-AUC gain {_fmt(auc)}"
    return Decision(True, f"{why}, lower bound above {policy.min_auc_gain}", rule, **found)


def _window_end(registry: ModelRegistry, version: str) -> str:
    return registry.read_json(version, "training.json")["window"]["train_end"]


def judge(
    registry: ModelRegistry,
    report: dict[str, Any],
    policy: GatePolicy | None = None,
    force: bool = False,
) -> Decision:
    """The gate's decision on the evaluated challenger of ``report`` (``evaluation.json``),
    against the champion it was evaluated with; changes nothing."""
    policy = policy or GatePolicy()
    version = report["version"]
    scores = read_parquet(registry.path(version) / SCORES_FILE)
    champion = report["champion"] if report["champion"] != version else None
    newer = (
        champion is not None
        and not report["champion_error"]
        and (_window_end(registry, version) > _window_end(registry, champion))
    )
    return decide(
        scores,
        policy,
        champion,
        newer_data=bool(newer),
        prior=report["prior_baseline"]["prior"],
        champion_error=report["champion_error"],
        force=force,
    )
