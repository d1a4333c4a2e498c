"""Promotion: the gate's decision applied to the registry, one gate at a time.

:func:`deploy` holds the registry's promotion lock (on object storage: a conditional write of the
pointer, retried when another promotion won the race), checks that the comparison is not stale
(the champion it was evaluated against is still the champion; else it evaluates again), asks the
gate (:func:`pipeline.gate.judge`) and records the decision with its policy in the version's
``evaluation.json``. A passing challenger becomes the champion (``direct``), or the candidate
scored in shadow (``shadow``, :mod:`pipeline.shadow`); after any promotion the previous champion
is on probation in shadow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.gate import Decision, GatePolicy, judge
from pipeline.model.pointers import PointerConflict
from pipeline.model.registry import ModelRegistry

MAX_PROMOTION_TRIES = 10  # object storage: races lost in a row before a promotion gives up


@dataclass(frozen=True)
class Deployment:
    """What the gate did: the champion after it, and the decision with its figures."""

    champion: str | None
    challenger: str
    promoted: bool
    forced: bool
    decision: Decision
    candidate: str | None = None  # shadow promotion: the challenger now waits in shadow
    promotion: str = "direct"

    @property
    def reason(self) -> str:
        return self.decision.reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "promoted": self.promoted,
            "forced": self.forced,
            "candidate": self.candidate,
            "promotion": self.promotion,
            "reason": self.reason,
            "rule": self.decision.rule,
            "comparison": self.decision.to_dict()["comparison"],
        }


def deploy(
    registry: ModelRegistry,
    report: dict[str, Any],
    policy: GatePolicy | None = None,
    force: bool = False,
    evaluate_again: Callable[[], dict[str, Any]] | None = None,
    promotion: str = "direct",
    probation_labels: int = 200,
) -> Deployment:
    """Applies the gate (:func:`judge`), records the decision and the policy in the version's
    ``evaluation.json``, and on promotion replaces the champion pointer atomically.

    Deciding and promoting hold the registry's promotion lock, so two runs that reach the gate
    together take turns. On object storage the pointer's write is conditional instead, and the
    loser of a race (PointerConflict) reads the new champion and goes round again. When the
    champion has changed since ``report`` was made (another run promoted meanwhile), the
    comparison is stale: ``evaluate_again`` scores the challenger
    against the new champion and the gate decides on that; without it, nothing is promoted
    (except ``force``) and the reason says why.

    ``promotion`` ``shadow`` makes a passing challenger the candidate (:mod:`pipeline.shadow`),
    but the first model and a forced one are promoted directly; after any promotion, the
    previous champion is on probation in shadow for ``probation_labels``.
    """
    if promotion not in ("direct", "shadow"):
        raise ValueError(f"promotion must be 'direct' or 'shadow', not {promotion!r}")
    policy = policy or GatePolicy()
    for _ in range(MAX_PROMOTION_TRIES):
        try:
            with registry.promotion_lock():
                return _decide(
                    registry, report, policy, force, evaluate_again, promotion, probation_labels
                )
        except PointerConflict:  # object storage: another run promoted since the lock's read;
            continue  # the champion is read again, so the comparison is stale: evaluated again
    tries = f"{MAX_PROMOTION_TRIES} other promotions came in between"
    raise PointerConflict(f"{tries}; {report['version']} is not promoted")


def _decide(registry: ModelRegistry, report: dict[str, Any], policy: GatePolicy, force: bool,
            evaluate_again: Callable[[], dict[str, Any]] | None, promotion: str,
            probation_labels: int) -> Deployment:  # fmt: skip
    """:func:`deploy`'s decision and promotion, inside the promotion lock."""
    version = report["version"]
    current = registry.champion()
    stale = current not in (report["champion"], version)
    if stale and evaluate_again is not None:
        report = evaluate_again()
        stale = registry.champion() not in (report["champion"], version)
    if stale and not force:
        decision = Decision(
            False,
            f"the champion changed to {current} after this challenger was evaluated against"
            f" {report['champion'] or 'no champion'}: not promoted on a stale comparison;"
            " evaluate it again",
            "stale_comparison",
        )
    else:
        decision = judge(registry, report, policy, force)
    gate = {**decision.to_dict(), "policy": asdict(policy)}
    registry.attach(version, "evaluation.json", {**report, "gate": gate})
    candidate = None
    if decision.promote and promotion == "shadow" and current and not force:
        registry.set_candidate(version, current, f"passed the offline gate: {decision.reason}")
        candidate = version
    elif decision.promote:
        registry.promote(version, reason=decision.reason, forced=force)
        if current and current != version:
            registry.start_probation(version, current, probation_labels)
    champion = registry.champion()
    promoted = decision.promote and candidate is None
    return Deployment(champion, version, promoted, force, decision, candidate, promotion)
