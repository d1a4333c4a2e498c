"""The gate: how fast it decides, and how often it promotes when it should and should not.

Part 1, speed: the gate's paired bootstrap (``pipeline.gate.compare``, 1,000 resamples,
vectorized) vs the same bootstrap as a plain loop over resamples with scikit-learn's
``roc_auc_score`` and ``log_loss``, on the real holdout scores of the default task's 7-day
holdout (about 6k rows), interleaved, median of 5 after a warm-up. Goal: the gate's whole
decision in at most 1 s.

Part 2, judgement: the real pipeline (``train_version``, ``evaluate_version``, ``judge``) on the
replayed 2013 flights, default ``TrainParams`` (60 training days, 7 holdout days), for each of 10
seeds s, against a champion trained with seed s:
  identical data   the same training again (goal: never promoted)
  another seed     seed s + 1000 on the same data (goal: at most 1 in 10)
  one more day     seed s, the window one day later (goal: at least 9 in 10)
  clearly better   the full model against a champion trained for one epoch on 5 days
                   (goal: always)
  vs 5 days        the full model against a champion fully trained on 5 days, the issue's
                   example of a clearly better model, for information (no goal): on this
                   window the 5-day model ranks the holdout better (docs/performance.md)
Each case prints its mean ROC-AUC gain over its champion beside the count.

    python benchmarks/gate.py           # 10 seeds (trains 80 models; about 8 min on 2 cores)
    python benchmarks/gate.py --quick   # smoke run: 1 seed, small models
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from pipeline.data.sources import make_source
from pipeline.evaluation import evaluate_version
from pipeline.gate import SCORES_FILE, GatePolicy, judge
from pipeline.home import FlywheelHome
from pipeline.model.comparison import compare
from pipeline.model.params import TrainParams
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import load_task

END = dt.date(2025, 10, 14)  # replays mid-October 2013
# The informational case before the last: every table of the benchmarks ends with a goal row.
CASES = ("identical data", "another seed", "one more day", "vs 5 days", "clearly better")
GOALS = {"identical data": (0, 0), "another seed": (0, 1), "one more day": (9, 10),
         "clearly better": (10, 10), "vs 5 days": None}  # fmt: skip


def loop_bootstrap(y, a, b, policy: GatePolicy):
    """The same paired bootstrap, one resample at a time with scikit-learn (side B)."""
    rng = np.random.default_rng(policy.seed)
    n, aucs, losses = len(y), [], []
    for _ in range(policy.resamples):
        i = rng.integers(0, n, n)
        if y[i].min() == y[i].max():
            continue
        aucs.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
        losses.append(log_loss(y[i], a[i], labels=[0, 1]) - log_loss(y[i], b[i], labels=[0, 1]))
    tail = (1 - policy.confidence) / 2
    return np.quantile(aucs, [tail, 1 - tail]), np.quantile(losses, [tail, 1 - tail])


def build_home(root: Path, spec, days: list[dt.date]) -> FlywheelHome:
    home = FlywheelHome.at(root)
    raw, feats, source = home.partitions("raw_data"), home.partitions("cleaned_features"), None
    source = make_source(spec)
    lead = [days[0] - dt.timedelta(days=k) for k in range(spec.lag_reach_days, 0, -1)]
    for day in [*lead, *days]:
        ingest_day(source, raw, day)
    for day in days:
        build_features_day(spec, raw, feats, day)
    return home


def reason_kind(reason: str) -> str:
    """A decision's reason without its version ids and figures, so that reasons of the same
    kind count together (each full reason is unique)."""
    text = re.sub(r"champion \S+ ", "champion ", reason)
    text = re.sub(r"\[[^\]]*\]", "[..]", text)
    return re.sub(r"[+-]?\d+(\.\d+)?", "#", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small models")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a TrainParams value (JSON) for every model, e.g. --param members=5 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    base = TrainParams()
    if args.quick:
        base = TrainParams(epochs=2, window_days=10, holdout_days=3, members=1)
    for item in args.param:  # values as JSON: members=5, hidden_sizes=[32,16]
        name, _, value = item.partition("=")
        base = TrainParams(**{**base.to_dict(), name: json.loads(value)})
    env = environment()
    print(f"gate benchmark: {describe_environment(env)}", flush=True)
    spec = load_task(None)
    n_days = base.window_days + base.holdout_days + 1
    days = [END + dt.timedelta(days=1) - dt.timedelta(days=k) for k in range(n_days - 1, -1, -1)]
    policy = GatePolicy()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        home = build_home(Path(tmp) / "home", spec, days)
        print(f"{len(days)} days of flights prepared in {time.perf_counter() - started:.1f} s")
        feats = home.partitions("cleaned_features")

        def train(registry, seed: int, end: dt.date = END, **params):
            values = {**base.to_dict(), "seed": seed, **params}
            return train_version(
                spec, feats, registry, TrainParams(**values), home.scratch("train"), end=end,
                raw=home.partitions("raw_data"),
            ).version  # fmt: skip

        def verdict(registry, version) -> bool:
            report = evaluate_version(feats, registry, version, spec.slices).report
            return judge(registry, report, policy)

        promoted: dict[str, list[bool]] = {c: [] for c in CASES}
        reasons: dict[str, list[str]] = {c: [] for c in CASES}
        gains: dict[str, list[float]] = {c: [] for c in CASES}

        def record(case: str, decision) -> None:
            promoted[case].append(decision.promote)
            reasons[case].append(decision.reason)
            gains[case].append(decision.comparison.difference)

        for seed in range(seeds):
            t0 = time.perf_counter()
            registry = FlywheelHome.at(Path(tmp) / f"models-{seed}").registry()
            registry.promote(train(registry, seed), reason="benchmark champion")
            for case, version in (
                ("identical data", train(registry, seed)),
                ("another seed", train(registry, seed + 1000)),
                ("one more day", train(registry, seed, END + dt.timedelta(days=1))),
            ):
                record(case, verdict(registry, version))
            for case, weak_params in (
                ("clearly better", {"window_days": 5, "epochs": 1}),
                ("vs 5 days", {"window_days": 5}),
            ):
                folder = f"weak-{seed}-{case.replace(' ', '-')}"
                weak = FlywheelHome.at(Path(tmp) / folder).registry()
                weak.promote(train(weak, seed, **weak_params), reason="benchmark weak champion")
                record(case, verdict(weak, train(weak, seed)))
            marks = ", ".join(f"{c} {'P' if promoted[c][-1] else '-'}" for c in CASES)
            print(f"seed {seed}: {marks} ({time.perf_counter() - t0:.0f} s)", flush=True)

        # Part 1: the decision's cost on the last real holdout (challenger vs champion).
        version = registry.versions()[-1]
        scores = pd.read_parquet(registry.path(version) / SCORES_FILE)
        y = scores["y"].to_numpy()
        a, b = scores["challenger"].to_numpy(), scores["champion"].to_numpy()
        report = evaluate_version(feats, registry, version, spec.slices).report
        judge(registry, report, policy)  # warm-up
        loop_bootstrap(y, a, b, policy)
        side_a, side_b, side_compare = [], [], []
        for _ in range(5):
            t = time.perf_counter()
            judge(registry, report, policy)
            side_a.append(time.perf_counter() - t)
            t = time.perf_counter()
            compare(y, a, b, policy)
            side_compare.append(time.perf_counter() - t)
            t = time.perf_counter()
            loop_bootstrap(y, a, b, policy)
            side_b.append(time.perf_counter() - t)

    decision_s, loop_s = spread(side_a), spread(side_b)
    compare_s = spread(side_compare)
    print(f"\nholdout rows: {len(y)}; the gate's decision (slices included):"
          f" {decision_s['median']:.3f} s ({decision_s['min']:.3f}-{decision_s['max']:.3f});"
          f" its bootstrap alone {compare_s['median']:.3f} s; the loop with scikit-learn:"
          f" {loop_s['median']:.2f} s ({loop_s['min']:.2f}-{loop_s['max']:.2f})")  # fmt: skip
    rows = [
        {
            "measure": f"gate decision, {len(y)} holdout rows, {policy.resamples} resamples (s)",
            "A": f"{decision_s['median']:.3f}",
            "B": f"{loop_s['median']:.2f}",
            "ratio": f"{loop_s['median'] / decision_s['median']:.0f}x faster",
            "goal": "A <= 1 s",
            "met": "yes" if decision_s["median"] <= 1.0 else "no",
        }
    ]
    for case in CASES:
        k, n = sum(promoted[case]), len(promoted[case])
        goal, met = "-", "-"  # an informational case
        if GOALS[case] is not None:
            low, high = GOALS[case]
            low, high = (low, high) if n == 10 else (low * n // 10, high * n // 10)
            goal, met = f"{low}..{high} of {n}", "yes" if low <= k <= high else "no"
        rows.append({
            "measure": f"promoted: {case}", "A": f"{k}/{n}",
            "B": f"mean gain {np.mean(gains[case]):+.4f}", "ratio": "-", "goal": goal, "met": met,
        })  # fmt: skip
    for case in CASES:
        kinds = collections.Counter(reason_kind(r) for r in reasons[case])
        kind, count = kinds.most_common(1)[0]
        example = next(r for r in reasons[case] if reason_kind(r) == kind)
        print(f"{case}, the most common reason ({count} of {len(reasons[case])}): {kind}\n"
              f"  e.g. {example}")  # fmt: skip
    print(
        "\nA: Flywheel's gate; B: the same bootstrap as a loop with scikit-learn, or the"
        " challengers' mean ROC-AUC gain over their champions"
    )
    print_table(rows)
    path = write_results(
        args.results_dir,
        "gate",
        {
            "environment": env,
            "quick": args.quick,
            "seeds": seeds,
            "params": base.to_dict(),
            "promoted": promoted,
            "reasons": reasons,
            "gains": gains,
            "decision_s": side_a,
            "compare_s": side_compare,
            "loop_s": side_b,
            "holdout_rows": len(y),
            "table": rows,
        },
    )
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
