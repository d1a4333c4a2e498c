"""Promotion: the gate's decision applied to the registry, one gate at a time (two runs at the
gate at once take turns; a stale comparison is evaluated again or promotes nothing)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path

from pipeline.data.storage import PartitionStore
from pipeline.evaluation import evaluate_version
from pipeline.gate import SCORES_FILE, GatePolicy
from pipeline.model.registry import ModelRegistry
from pipeline.promotion import deploy
from tests.helpers import SERVE_DAY, build_home, train_small

# -- two runs at the gate at once --------------------------------------------------------------
EASY = GatePolicy(max_auc_loss=1.0, max_log_loss_gain=1.0, max_slice_drop=1.0, min_holdout_rows=1)


def _deploy_at_once(home, slices, report, barrier, out) -> None:
    """One run's gate, in its own process, started with the other's at the barrier."""
    registry = ModelRegistry(Path(home) / "models")
    features = PartitionStore(Path(home) / "cleaned_features")
    barrier.wait()
    done = deploy(
        registry, report, EASY,
        evaluate_again=lambda: evaluate_version(features, registry, report["version"],
                                                slices).report,
    )  # fmt: skip
    out.put((report["version"], done.promoted, done.decision.rule))


def test_two_runs_at_the_gate_take_turns_and_the_second_compares_with_the_first(tmp_path):
    spec, home, registry = build_home(tmp_path)
    first_champion = registry.champion()
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    reports = []
    for seed in (1, 2):  # both trained on a day more, both evaluated against the same champion
        version = train_small(spec, feats, raw, registry, tmp_path / "scratch",
                              SERVE_DAY + dt.timedelta(days=1), seed=seed)  # fmt: skip
        reports.append(evaluate_version(feats, registry, version, spec.slices).report)
    assert {r["champion"] for r in reports} == {first_champion}

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    runs = [ctx.Process(target=_deploy_at_once, args=(str(home), spec.slices, r, barrier, out))
            for r in reports]  # fmt: skip
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
        assert run.exitcode == 0
    results = {out.get(timeout=5)[0] for _ in runs}
    assert results == {r["version"] for r in reports}

    # Whoever went first was judged against the old champion and promoted; the second was
    # judged against the first, not the stale champion of its evaluation.
    # (the log also records each promotion's probation: the champion pointer's records here)
    history = [r for r in registry.history() if r["action"] == "promote"]
    assert history[0]["version"] == first_champion
    first = history[1]["version"]
    assert history[1]["previous"] == first_champion
    second = next(r["version"] for r in reports if r["version"] != first)
    judged = registry.read_json(second, "evaluation.json")
    assert judged["champion"] == first, judged["champion"]
    if len(history) > 2:  # promoted too: the chain of pointers stays whole
        assert history[2] == {**history[2], "version": second, "previous": first}
    assert (registry.path(second) / SCORES_FILE).is_file()


def test_a_stale_comparison_without_a_way_to_evaluate_again_promotes_nothing(tmp_path):
    spec, home, registry = build_home(tmp_path)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    version = train_small(spec, feats, raw, registry, tmp_path / "scratch",
                          SERVE_DAY + dt.timedelta(days=1), seed=1)  # fmt: skip
    report = evaluate_version(feats, registry, version, spec.slices).report
    other = train_small(spec, feats, raw, registry, tmp_path / "scratch",
                        SERVE_DAY + dt.timedelta(days=1), seed=2)  # fmt: skip
    registry.promote(other, reason="another run won")
    done = deploy(registry, report, EASY)
    assert not done.promoted and done.decision.rule == "stale_comparison"
    assert f"the champion changed to {other}" in done.reason
    assert registry.champion() == other
