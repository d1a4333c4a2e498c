"""The gate: its statistics on hand-made scores, then its decisions with real models on real
flights (a retrain that brings nothing new never replaces the champion)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.evaluation import evaluate_version
from pipeline.gate import SCORES_FILE, GatePolicy, decide
from pipeline.model.comparison import compare
from pipeline.model.params import TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.promotion import deploy
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import load_task
from tests.helpers import scored

POLICY = GatePolicy()


# -- the statistics ------------------------------------------------------------------------------
def test_identical_scores_have_a_zero_width_interval_and_are_not_promoted():
    y, a, _ = scored()
    frame = pd.DataFrame({"y": y, "challenger": a, "champion": a})
    auc, _ = compare(y, a, a, POLICY)
    assert (auc.difference, auc.ci_low, auc.ci_high) == (0.0, 0.0, 0.0)
    decision = decide(frame, POLICY, "old", newer_data=False, prior=0.25)
    assert not decision.promote and decision.rule == "same_data"
    assert "no significant gain" in decision.reason


@pytest.mark.parametrize(
    ("newer", "worse", "promote", "rule_text"),
    [
        (False, False, False, "same data and no significant gain"),  # a tie
        (True, False, True, "newer data, not significantly worse"),  # a tie on newer data
        (True, True, False, "significantly worse"),
    ],
)
def test_the_two_rules(newer, worse, promote, rule_text):
    y, a, rng = scored()
    challenger = np.clip(a + rng.normal(0, 0.3, len(y)), 0.001, 0.999) if worse else a
    frame = pd.DataFrame({"y": y, "challenger": challenger, "champion": a})
    decision = decide(frame, POLICY, "old", newer_data=newer, prior=0.25)
    assert decision.promote is promote, decision.reason
    assert rule_text in decision.reason
    assert decision.rule == ("newer_data" if newer else "same_data")


# (0.03, 0.05, 0.07): the members agree less; one retrain's standard error with the normal
# quantile put the lower bound at +0.0068 (promoted), two retrains' difference with Student's t
# for 2 dof puts it at -0.0045: two seeds alike could differ by as much.
@pytest.mark.parametrize(("member_gains", "promote"), [((0.04, 0.05, 0.06), True),
                                                        ((0.03, 0.05, 0.07), False),
                                                        ((-0.1, 0.05, 0.2), False)])  # fmt: skip
def test_same_data_gain_must_beat_the_members_retraining_noise(member_gains, promote):
    # Each challenger member is the champion with some extra signal; their mean gains about
    # 0.012 AUC, which the rows' bootstrap alone calls significant. When the members agree that
    # is a real gain; when they spread widely, a retrain with another seed could give as much.
    y, champion, _ = scored(n=4000)
    logit = np.log(champion / (1 - champion))
    members = np.column_stack([1 / (1 + np.exp(-(logit + g * (2 * y - 1)))) for g in member_gains])
    frame = pd.DataFrame({"y": y, "challenger": members.mean(axis=1), "champion": champion})
    rows_only = decide(frame, POLICY, "old", newer_data=False, prior=0.25)
    assert rows_only.promote and rows_only.retraining_noise is None  # no member columns
    for j in range(3):
        frame[f"challenger_member_{j}"] = members[:, j]
        frame[f"champion_member_{j}"] = champion
    decision = decide(frame, POLICY, "old", newer_data=False, prior=0.25)
    assert decision.retraining_noise.standard_error > 0
    assert decision.slices == []  # members are no slices
    assert decision.promote is promote, decision.reason
    assert "retraining noise" in decision.comparison.method
    assert decision.comparison.ci_low < rows_only.comparison.ci_low
    assert decision.to_dict()["retraining_noise"] == decision.retraining_noise.to_dict()
    newer = decide(frame, POLICY, "old", newer_data=True, prior=0.25)
    assert newer.retraining_noise is None and newer.comparison == rows_only.comparison
    # The challenger's members alone measure the noise: the champion's spread (a model that may
    # come from other code, data or parameters) does not widen the interval.
    for j in range(3):
        frame[f"champion_member_{j}"] = members[:, 2 - j]
    assert decide(frame, POLICY, "old", False, 0.25).comparison == decision.comparison


@pytest.mark.parametrize(("shift", "promote"), [(0.02, True), (0.05, False)])
def test_newer_data_tolerates_a_small_significant_rise_in_log_loss(shift, promote):
    # The same ranking (AUC unchanged), calibration moved by ``shift`` in logit: log loss rises
    # by about 0.003 (significant, lower bound above 0, but within max_log_loss_gain 0.005) or
    # by about 0.009 (beyond it).
    y, a, _ = scored()
    challenger = 1 / (1 + np.exp(-(np.log(a / (1 - a)) + shift)))
    frame = pd.DataFrame({"y": y, "challenger": challenger, "champion": a})
    decision = decide(frame, POLICY, "old", newer_data=True, prior=0.25)
    assert decision.log_loss.ci_low > 0.0
    assert decision.promote is promote, decision.reason
    if not promote:
        assert "log loss is significantly worse" in decision.reason
        assert "lower bound above 0.005" in decision.reason


def test_too_few_rows_no_champion_and_force():
    y, a, _ = scored(n=400)
    frame = pd.DataFrame({"y": y, "challenger": a, "champion": np.nan})
    few = decide(frame, POLICY, None, newer_data=False, prior=0.25)
    assert not few.promote and "fewer than min_holdout_rows 500" in few.reason
    forced = decide(frame, POLICY, None, newer_data=False, prior=0.25, force=True)
    assert forced.promote and forced.rule == "forced" and "forced by run config" in forced.reason
    y, a, _ = scored(n=2000)
    first = decide(pd.DataFrame({"y": y, "challenger": a}), POLICY, None, False, prior=0.25)
    assert first.promote and first.rule == "no_champion" and first.comparison.ci_low > 0
    noise = np.random.default_rng(5).random(2000)
    useless = decide(pd.DataFrame({"y": y, "challenger": noise}), POLICY, None, False, 0.25)
    assert not useless.promote and "not significantly better than the prior" in useless.reason


# -- real models on real rows --------------------------------------------------------------------
END = dt.date(2025, 5, 20)  # replayed 2013 days, no storm in the holdout
PARAMS = dict(epochs=6, window_days=28, holdout_days=7, members=1, patience=2, batch_size=2048)


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    """36 days of real flights in raw_data and cleaned_features."""
    root = tmp_path_factory.mktemp("gate")
    spec = load_task(None)
    raw, feats = PartitionStore(root / "raw_data"), PartitionStore(root / "cleaned_features")
    source = make_source(spec)
    days = [END + dt.timedelta(days=1) - dt.timedelta(days=k) for k in range(44, -1, -1)]
    # the lagged rates' windows end label_delay_days before their day: raw days that far back
    lead = [days[0] - dt.timedelta(days=k) for k in range(spec.label_delay_days, 0, -1)]
    for day in [*lead, *days]:
        ingest_day(source, raw, day)
    for day in days:
        build_features_day(spec, raw, feats, day)
    return spec, raw, feats, root


def gate(flights, registry: ModelRegistry, end=END, force=False, **params):
    spec, raw, feats, root = flights
    trained = train_version(
        spec, feats, registry, TrainParams(**{**PARAMS, **params}), root / "scratch", end=end,
        raw=raw,
    )  # fmt: skip
    report = evaluate_version(feats, registry, trained.version, slice_columns=spec.slices)
    return trained.version, deploy(registry, report.report, POLICY, force=force)


@pytest.fixture
def registry(flights, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    _, done = gate(flights, registry)
    assert done.promoted and done.decision.rule == "no_champion", done.reason
    return registry


@pytest.mark.slow
def test_retrain_on_the_same_data_or_with_another_seed_is_not_promoted(flights, registry):
    champion = registry.champion()
    _, done = gate(flights, registry)
    assert not done.promoted and done.decision.comparison.difference == 0.0
    assert "same data" in done.reason and registry.champion() == champion
    other, done = gate(flights, registry, seed=1)
    assert not done.promoted and done.decision.rule == "same_data", done.reason
    assert registry.champion() == champion
    report = registry.read_json(other, "evaluation.json")
    assert report["gate"]["comparison"]["metric"] == "roc_auc"
    assert {"ci_low", "ci_high", "confidence", "n", "method"} <= set(report["gate"]["comparison"])
    assert {s["column"] for s in report["gate"]["slices"]} == {"origin", "carrier"}
    kept = pd.read_parquet(registry.path(other) / SCORES_FILE).columns
    assert {"challenger_member_0", "champion_member_0"} <= set(kept)  # one member each:
    assert report["gate"]["retraining_noise"] is None  # no spread to measure


@pytest.mark.slow
def test_a_day_of_newer_data_is_promoted_unless_clearly_worse(flights, registry):
    champion = registry.champion()
    _, done = gate(flights, registry, end=END + dt.timedelta(days=1), epochs=1,
                       window_days=2)  # fmt: skip
    assert not done.promoted and "significantly worse" in done.reason, done.reason
    assert registry.champion() == champion
    fresh, done = gate(flights, registry, end=END + dt.timedelta(days=1))
    assert done.promoted and done.decision.rule == "newer_data", done.reason
    assert registry.champion() == fresh


@pytest.mark.slow
def test_a_clearly_better_model_is_promoted_and_a_slice_regression_refused(flights, tmp_path):
    registry = ModelRegistry(tmp_path / "weak")
    weak, done = gate(flights, registry, window_days=3, epochs=2)
    assert done.promoted
    strong, done = gate(flights, registry)
    assert done.promoted and done.decision.rule == "same_data", done.reason
    assert done.decision.comparison.ci_low > 0

    # The same two models' real scores, with the strong one's ranking turned upside down on one
    # carrier with enough rows: better overall, clearly worse on that slice.
    scores = pd.read_parquet(registry.path(strong) / SCORES_FILE)
    weak_scores = pd.read_parquet(registry.path(weak) / SCORES_FILE)["challenger"].to_numpy()
    frame = scores.assign(champion=weak_scores)
    judged = [s for s in done.decision.slices if s.column == "carrier" and s.verdict == "ok"]
    # The carrier where turning the ranking over costs the most against the champion.
    carrier = max(judged, key=lambda s: s.champion_auc + s.challenger_auc).value
    rows = (frame["carrier"] == carrier).to_numpy()
    permuted = frame["challenger"].to_numpy().copy()
    permuted[rows] = 1.0 - permuted[rows]
    decision = decide(frame.assign(challenger=permuted), POLICY, weak, False, prior=0.2)
    assert decision.comparison.difference > 0  # still better overall
    assert not decision.promote and f"carrier={carrier}" in decision.reason, decision.reason
