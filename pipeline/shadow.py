"""Promotion on live traffic: the rules that judge a model scored in shadow, on the same served
requests that have feedback, with the paired interval the offline gate uses
(:func:`pipeline.model.comparison.compare`).

**A candidate** (``other`` below: the champion it shadows), once ``min_labels`` shadowed requests
have feedback and both classes are there:

* rejected when it is significantly worse: the upper bound of its ROC-AUC gain below 0, or the
  lower bound of its extra log loss above 0 (the offline gate's log-loss rule, on live rows);
* promoted when it is significantly better on ROC-AUC, or when its ROC-AUC is not significantly
  different and its log loss is significantly lower (upper bound below 0). The second way is
  argued so: the app's answers are its scores against a threshold; a model that ranks the
  requests as well and whose probabilities are significantly closer to the outcomes serves
  better decisions, and "not significantly different" on ROC-AUC is already required;
* otherwise it keeps waiting; a candidate still undecided ``max_days`` after it became one is
  rejected as not proven (the champion stays: the burden of proof is on the challenger).

**A probation** (the new champion against the previous one it replaced): once
``probation_labels`` of the champion's shadowed requests have feedback, it is rolled back when it
is significantly worse (as above), else its probation ends. One look at the end of the period,
not one per tick: looking again at every new label would make a chance rollback of a good model
far likelier than the 2.5% one side of a 95% interval allows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.gate import GatePolicy
from pipeline.model.comparison import Comparison, compare

WAIT, PROMOTE, REJECT, ROLLBACK, PASS = "wait", "promote", "reject", "rollback", "pass"


@dataclass(frozen=True)
class ShadowPolicy:
    """How much live evidence decides; the interval's confidence, resamples and seed are the
    gate's (:class:`pipeline.gate.GatePolicy`)."""

    shadow_min_labels: int = 200
    shadow_max_days: float = 7.0
    probation_labels: int = 200


@dataclass(frozen=True)
class ShadowDecision:
    """``action``: wait, promote, reject (a candidate), rollback or pass (a probation)."""

    action: str
    reason: str
    labels: int
    comparison: Comparison | None = None
    log_loss: Comparison | None = None

    def figures(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "log_loss": self.log_loss.to_dict() if self.log_loss else None,
        }


def _fmt(c: Comparison) -> str:
    return f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}] ({c.confidence:.0%})"


def _evidence(y: np.ndarray, minimum: int) -> str | None:
    """Why ``y`` cannot be judged yet, or None."""
    pos = int(y.sum())
    if len(y) < minimum:
        return f"{len(y)} of {minimum} shadowed requests have feedback"
    if pos == 0 or pos == len(y):
        return f"the {len(y)} labelled shadowed requests hold one class alone"
    return None


def _worse(auc: Comparison, loss: Comparison) -> str | None:
    if auc.ci_high < 0.0:
        return f"significantly worse on ROC-AUC: {_fmt(auc)}, upper bound below 0"
    if loss.ci_low > 0.0:
        return f"significantly worse on log loss: {_fmt(loss)}, lower bound above 0"
    return None


def decide_candidate(
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    policy: GatePolicy,
    shadow: ShadowPolicy,
    age_days: float,
    names: tuple[str, str] = ("the candidate", "the champion"),
) -> ShadowDecision:
    """The candidate's fate on labelled shadowed requests: labels ``y``, both models' scores."""
    y = np.asarray(y, dtype=np.float64)
    me, other = names
    short = _evidence(y, shadow.shadow_min_labels)
    if short:
        if age_days >= shadow.shadow_max_days:
            why = (f"{me} is not proven after {age_days:.1f} days (shadow_max_days"
                   f" {shadow.shadow_max_days:g}): {short}; {other} stays")  # fmt: skip
            return ShadowDecision(REJECT, why, len(y))
        return ShadowDecision(WAIT, f"waiting: {short}", len(y))
    auc, loss = compare(y, candidate, champion, policy)
    found = dict(labels=len(y), comparison=auc, log_loss=loss)
    on = f"on {len(y)} shadowed requests with feedback"
    worse = _worse(auc, loss)
    if worse:
        return ShadowDecision(REJECT, f"{me} is {worse} {on}; {other} stays", **found)
    if auc.ci_low > 0.0:
        why = f"{me} is significantly better on ROC-AUC {on}: gain {_fmt(auc)}, lower bound above 0"
        return ShadowDecision(PROMOTE, why, **found)
    if loss.ci_high < 0.0:
        why = (f"{me} is as good on ROC-AUC ({_fmt(auc)}) and significantly better on log loss"
               f" {on}: {_fmt(loss)}, upper bound below 0")  # fmt: skip
        return ShadowDecision(PROMOTE, why, **found)
    if age_days >= shadow.shadow_max_days:
        why = (f"{me} is not proven after {age_days:.1f} days (shadow_max_days"
               f" {shadow.shadow_max_days:g}): neither significantly better nor worse {on},"
               f" ROC-AUC gain {_fmt(auc)}; {other} stays")  # fmt: skip
        return ShadowDecision(REJECT, why, **found)
    why = f"waiting: no significant difference yet {on}, ROC-AUC gain {_fmt(auc)}"
    return ShadowDecision(WAIT, why, **found)


def decide_probation(
    y: np.ndarray,
    champion: np.ndarray,
    previous: np.ndarray,
    policy: GatePolicy,
    shadow: ShadowPolicy,
    names: tuple[str, str] = ("the champion", "the previous champion"),
) -> ShadowDecision:
    """A new champion on probation against the ``previous`` one, on its shadowed requests."""
    y = np.asarray(y, dtype=np.float64)
    me, other = names
    short = _evidence(y, shadow.probation_labels)
    if short:
        return ShadowDecision(WAIT, f"on probation: {short}", len(y))
    auc, loss = compare(y, champion, previous, policy)
    found = dict(labels=len(y), comparison=auc, log_loss=loss)
    on = f"than {other} on {len(y)} of its requests with feedback"
    worse = _worse(auc, loss)
    if worse:
        return ShadowDecision(ROLLBACK, f"{me} is {worse} {on}: rolled back", **found)
    why = f"{me} is not significantly worse {on} (ROC-AUC gain {_fmt(auc)}): probation passed"
    return ShadowDecision(PASS, why, **found)


def age_in_days(since: str, now: dt.datetime) -> float:
    """Days from an ISO timestamp (``candidate.json``'s ``since``) to ``now``."""
    start = dt.datetime.fromisoformat(since)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    return (now - start).total_seconds() / 86400.0
