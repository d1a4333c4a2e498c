import pytest

from pipeline.gate import decide


def report(auc: float, champion_auc: float | None = None, champion_error: str | None = None):
    return {
        "version": "new",
        "challenger": {"roc_auc": auc},
        "prior_baseline": {"roc_auc": 0.5},
        "champion": "old" if champion_auc is not None or champion_error else None,
        "champion_metrics": {"roc_auc": champion_auc} if champion_auc is not None else None,
        "champion_error": champion_error,
    }


@pytest.mark.parametrize(
    ("rep", "gain", "force", "promote", "why"),
    [
        (report(0.70), 0.0, False, True, "no champion yet"),
        (report(0.50), 0.0, False, False, "not above the prior"),
        (report(0.45), 0.0, True, True, "forced"),
        (report(0.72, 0.70), 0.0, False, True, ">= champion"),
        (report(0.70, 0.70), 0.0, False, True, ">= champion"),
        (report(0.71, 0.70), 0.02, False, False, "champion old stays"),
        (report(0.69, 0.70), 0.0, False, False, "champion old stays"),
        (report(0.69, 0.70), 0.0, True, True, "forced"),
        (report(0.75, champion_error="file weights.pt is corrupt"), 0.0, False, False, "cannot"),
    ],
)
def test_gate(rep, gain, force, promote, why):
    decision = decide(rep, gain, force)
    assert decision.promote is promote
    assert why in decision.reason
