"""FLYWHEEL_HOME on local disk vs on an S3 server on loopback: the same work, side by side.

Two sides in one run, interleaved (local, S3, local, S3, ...), each repeat with a fresh Dagster
instance and a fresh home (a new folder; a new bucket on moto's S3 server, started here on
127.0.0.1, reached through the standard AWS variables as a deployment would):

1. backfill: ``dagster asset materialize -m definitions --select raw_data,cleaned_features
   --partition-range FIRST...LAST`` over N days of the flights replay (all of them labelled);
2. retrain: ``dagster asset materialize --select trained_model,evaluation_report,deployed_model``
   on those days (the last ``window + holdout`` days; promotion forced, so that there is a
   champion to serve);
3. serving start: ``flywheel serve`` from its start until ``/health`` answers ``ok`` with the
   champion loaded from the home.

Target (issue 14): the S3 side at most 2x the local side, on each measure. The S3 server is
moto's, in this process: no network, so what is measured is the cost of going through
fsspec/s3fs and HTTP requests instead of the file system, not a real network's latency.

    python benchmarks/storage.py             # 90 days, 3 repeats (several minutes)
    python benchmarks/storage.py --quick     # the backfill alone, 3 days, 1 repeat: a smoke run
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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from benchmarks.backfill import BIN, PROJECT_DIR, timed
from tests.servers import free_port, s3_server

MEASURES = ("backfill", "retrain", "serving start")
GOAL = 2.0


def side_env(root: Path, home: str, first: dt.date, s3_env: dict[str, str]) -> dict[str, str]:
    """A fresh Dagster instance under ``root``; FLYWHEEL_HOME ``home``; the feedback store a
    SQLite file under ``root`` on both sides (SQLite cannot live in a bucket)."""
    dagster_home = root / "dagster_home"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {
        **os.environ,
        **s3_env,
        "DAGSTER_HOME": str(dagster_home),
        "FLYWHEEL_HOME": home,
        "FLYWHEEL_FEEDBACK_URL": f"sqlite:///{root}/feedback.sqlite",
        "FLYWHEEL_START_DATE": first.isoformat(),
        "FLYWHEEL_RETRAIN_DEFAULT_STATUS": "stopped",
        "PYTHONPATH": str(PROJECT_DIR),
    }


def backfill(env: dict[str, str], first: dt.date, last: dt.date) -> float:
    keys = f"{first}...{last}"
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "definitions",
           "--select", "raw_data,cleaned_features", "--partition-range", keys]  # fmt: skip
    return timed(cmd, env, "the backfill")


def retrain(env: dict[str, str], last: dt.date, window: int, holdout: int, epochs: int) -> float:
    train = {"end_date": last.isoformat(), "window_days": window, "holdout_days": holdout,
             "epochs": epochs, "members": 1}  # fmt: skip
    config = {"ops": {"trained_model": {"config": train},
                      "deployed_model": {"config": {"force": True}}}}  # fmt: skip
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "definitions",
           "--select", "trained_model,evaluation_report,deployed_model",
           "--config-json", json.dumps(config)]  # fmt: skip
    return timed(cmd, env, "the retrain")


def serving_start(env: dict[str, str]) -> float:
    """Seconds from starting ``flywheel serve`` to ``/health`` answering ok with a model."""
    port = free_port()
    cmd = [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        while time.perf_counter() - started < 120:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"flywheel serve ended ({proc.returncode}): {proc.stderr.read()}"
                )
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
            except httpx.HTTPError:
                health = {}
            if health.get("status") == "ok" and health.get("serving_version"):
                return time.perf_counter() - started
            time.sleep(0.05)
        raise RuntimeError("flywheel serve did not become healthy within 120 s")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the backfill of 3 days, 1 repeat")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="the retrain's most epochs")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args()
    measures = MEASURES
    if args.quick:  # each measure starts a process; the smoke run keeps to the first
        args.days, args.repeats, measures = 3, 1, MEASURES[:1]
    holdout = 7 if args.days >= 30 else 2
    window = min(60, args.days - holdout)
    # Every day labelled (the flights task's labels mature after 30 days), so that the retrain
    # has its window; the partitions start on the first day.
    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=31)
    first = last - dt.timedelta(days=args.days - 1)
    env_info = environment()
    for name in ("dagster", "s3fs", "universal-pathlib", "moto"):
        env_info["libraries"][name] = metadata.version(name)
    what = f"backfill of {args.days} days ({first}..{last})"
    if len(measures) > 1:
        what += f", retrain ({window} + {holdout} days, {args.epochs} epoch(s)), serving start"
    print(f"FLYWHEEL_HOME on local disk vs on moto's S3 server (loopback): {what};"
          f" {args.repeats} repeat(s), interleaved")  # fmt: skip
    print(describe_environment(env_info))

    seconds: dict[str, dict[str, list[float]]] = {
        side: {m: [] for m in measures} for side in ("local", "s3")
    }
    with s3_server() as s3, tempfile.TemporaryDirectory(prefix="flywheel-storage-") as tmp:
        for repeat in range(args.repeats):
            for side in ("local", "s3"):
                root = Path(tmp) / f"{side}-{repeat}"
                home = str(root / "flywheel") if side == "local" else f"{s3.bucket()}/home"
                env = side_env(root, home, first, s3.env)
                runs = {
                    "backfill": lambda env=env: backfill(env, first, last),
                    "retrain": lambda env=env: retrain(env, last, window, holdout, args.epochs),
                    "serving start": lambda env=env: serving_start(env),
                }
                for measure in measures:
                    seconds[side][measure].append(runs[measure]())
                row = ", ".join(f"{m} {seconds[side][m][-1]:.1f} s" for m in measures)
                print(f"  repeat {repeat + 1} {side:<5}: {row}", flush=True)

    table, payload = [], {"days": args.days, "repeats": args.repeats, "quick": args.quick,
                          "environment": env_info, "seconds": seconds, "ratio": {}}  # fmt: skip
    for measure in measures:
        local, remote = spread(seconds["local"][measure]), spread(seconds["s3"][measure])
        ratio = remote["median"] / local["median"]
        payload["ratio"][measure] = ratio
        table.append({
            "measure": f"{measure} ({args.days} days)" if measure == "backfill" else measure,
            "A": f"local {local['median']:.1f} s [{local['min']:.1f}-{local['max']:.1f}]",
            "B": f"S3 {remote['median']:.1f} s [{remote['min']:.1f}-{remote['max']:.1f}]",
            "ratio": f"{ratio:.2f}x",
            "goal": f"<= {GOAL:.0f}x",
            "met": "yes" if ratio <= GOAL else "NO",
        })  # fmt: skip
    path = write_results(args.results_dir, "storage", payload)
    print(f"results: {path}")
    print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
