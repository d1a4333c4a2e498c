"""The shadow evaluation step: judges the version in shadow (``candidate.json``) on the served
requests that have feedback, and acts on the decision (:mod:`pipeline.shadow` holds the rules).

A candidate that proves better is promoted (the champion pointer, then its record, then the
probation of the champion it replaced); one that proves worse, or is not proven in time, is
rejected. A champion on probation that proves worse than the previous one is rolled back to it
(``reason: probation`` in ``promotions.jsonl``). Everything happens under the registry's
promotion lock, so no gate or rollback lands in between.

Each pointer is written before its record is appended, so a crash in between leaves a record
missing, never one that lies, and the next evaluation finds the state the pointers hold and
finishes it: a candidate that is already the champion starts its probation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.feedback.queries import shadowed_labels
from pipeline.feedback.store import FeedbackStore
from pipeline.gate import GatePolicy
from pipeline.model.candidate import CANDIDATE, PROBATION
from pipeline.model.registry import ModelRegistry
from pipeline.shadow import (
    PASS,
    PROMOTE,
    REJECT,
    ROLLBACK,
    WAIT,
    ShadowDecision,
    ShadowPolicy,
    age_in_days,
    decide_candidate,
    decide_probation,
)


@dataclass(frozen=True)
class ShadowOutcome:
    """What the evaluation did: ``action`` (none, wait, promote, reject, rollback, pass,
    recovered, ended), the champion before and after, and the decision's figures."""

    action: str
    reason: str
    champion_before: str | None
    champion: str | None
    shadow: str | None = None
    role: str | None = None
    decision: ShadowDecision | None = None
    record: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def champion_changed(self) -> bool:
        return self.champion != self.champion_before

    def to_dict(self) -> dict[str, Any]:
        figures = self.decision.figures() if self.decision else {}
        return {"action": self.action, "reason": self.reason, "shadow": self.shadow,
                "role": self.role, "champion_before": self.champion_before,
                "champion": self.champion, **figures}  # fmt: skip


def _judged(store: FeedbackStore, champion: str, shadow: str):
    rows = shadowed_labels(store, champion, shadow)
    y = rows["label"].to_numpy(dtype=np.float64)
    return y, rows["score"].to_numpy(np.float64), rows["shadow_score"].to_numpy(np.float64)


def evaluate_shadow(
    registry: ModelRegistry,
    store: FeedbackStore,
    policy: GatePolicy | None = None,
    shadow: ShadowPolicy | None = None,
    now: dt.datetime | None = None,
) -> ShadowOutcome:
    """Judges the version in shadow and acts on the decision; see the module's docstring."""
    policy, shadow = policy or GatePolicy(), shadow or ShadowPolicy()
    now = now or dt.datetime.now(dt.UTC)
    with registry.promotion_lock():
        record = registry.shadow_record()
        champion_record = registry.champion_record()
        champion = champion_record["version"] if champion_record else None
        if record is None or champion is None:
            why = "nothing is scored in shadow" if record is None else "there is no champion"
            return ShadowOutcome("none", why, champion, champion)
        version, role = record["version"], record["role"]
        out = dict(champion_before=champion, shadow=version, role=role)
        if role == CANDIDATE and version == champion:
            # promoted, but the run stopped before the probation began: begin it now
            previous = champion_record.get("previous")
            why = (f"candidate {version} is already the champion (promoted at"
                   f" {champion_record.get('promoted_at')}); its probation begins now")  # fmt: skip
            if previous and previous != version:
                registry.start_probation(version, previous, shadow.probation_labels)
            else:
                registry.end_shadow("shadow_ended", why)
            return ShadowOutcome("recovered", why, champion=champion, **out)
        if role == PROBATION and record.get("champion") != champion:
            why = (f"the probation of {record.get('champion')} ends: the champion is now"
                   f" {champion}")  # fmt: skip
            registry.end_shadow("probation_ended", why)
            return ShadowOutcome("ended", why, champion=champion, **out)
        y, served, shadowed = _judged(store, champion, version)
        if role == CANDIDATE:
            age = age_in_days(record["since"], now)
            names = (f"candidate {version}", f"champion {champion}")
            decision = decide_candidate(y, shadowed, served, policy, shadow, age, names)
        else:
            names = (f"champion {champion}", f"previous champion {version}")
            decision = decide_probation(y, served, shadowed, policy, shadow, names)
        done = _act(registry, decision, version, champion, shadow)
        return ShadowOutcome(decision.action, decision.reason, champion=registry.champion(),
                             decision=decision, record=done, **out)  # fmt: skip


def _act(
    registry: ModelRegistry,
    decision: ShadowDecision,
    version: str,
    champion: str,
    shadow: ShadowPolicy,
) -> dict[str, Any] | None:
    """Applies ``decision`` about ``version`` in shadow beside ``champion``; the record."""
    figures = decision.figures()
    if decision.action == WAIT:
        return None
    if decision.action == PROMOTE:
        done = registry.promote(version, reason=decision.reason, action="shadow_promote",
                                **figures)  # fmt: skip
        registry.start_probation(version, champion, shadow.probation_labels)
        return done
    if decision.action == REJECT:
        return registry.end_shadow("shadow_reject", decision.reason, **figures)
    if decision.action == ROLLBACK:
        done = registry.promote(version, reason="probation", action="rollback",
                                explanation=decision.reason, rolled_back=champion,
                                **figures)  # fmt: skip
        registry.end_shadow("probation_failed", decision.reason, **figures)
        return done
    assert decision.action == PASS, decision.action
    return registry.end_shadow("probation_passed", decision.reason, **figures)
