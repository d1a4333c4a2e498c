"""From the feedback that crosses the sensor's threshold to the new champion being served.

The real loop: ``dagster-webserver`` and ``dagster-daemon`` (``tests/servers.py``) with the
feedback sensor on, the serving app in this process on 127.0.0.1, real flights days. Each round
posts ``min_new_feedback`` rows of feedback through the app and times the parts: waiting for the
sensor's tick (until the run is created), the run's start, user_feedback + training, evaluation
+ promotion, and the app's switch to the new champion. Side B is the same training done
directly in this process (``train_version``), the floor that orchestration adds to.

    python benchmarks/feedback_latency.py          # 3 rounds, the sensor every 30 s
    python benchmarks/feedback_latency.py --quick  # 1 round, the sensor every 5 s
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    write_results,
)
from serving import SERVE_DAY, build_champion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests/servers.py

from dagster import DagsterInstance, RunsFilter

from assets.sensors import RUN_KEY_TAG, run_key
from pipeline.data.labels import compute_labels
from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.model.params import TrainParams
from pipeline.serving.app import create_app
from pipeline.serving.features import records_for_api
from pipeline.steps import train_version
from tests.helpers import Server
from tests.servers import start_dagster, wait_until

MIN_NEW = 50


def one_round(stack, client, instance, registry, records, labels, acted: int) -> dict:
    before = registry.champion()
    body = {"records": records}
    preds = client.post("/predict", json=body).raise_for_status().json()["predictions"]
    for pred, y in zip(preds, labels, strict=True):
        item = {"prediction_id": pred["prediction_id"], "label": int(y), "source": "bench"}
        client.post("/feedback", json=item).raise_for_status()
    crossed = time.time()  # the last post crossed the threshold
    key = run_key(acted, acted + len(records), 0)
    flt = RunsFilter(tags={RUN_KEY_TAG: key})
    [run] = wait_until(lambda: instance.get_run_records(flt), 180, key, 0.2, stack.logs)
    done = wait_until(
        lambda: (r := instance.get_run_records(flt)[0]).end_time and r, 300, "run end", 0.2
    )
    if done.dagster_run.status.value != "SUCCESS":
        raise RuntimeError(f"run {key} ended {done.dagster_run.status}\n{stack.logs()}")
    new = registry.champion()
    if new == before:
        raise RuntimeError("the run did not promote a new champion")
    wait_until(lambda: client.get("/model").json()["version"] == new, 30, "the swap", 0.05)
    served = time.time()
    steps = {s.step_key: s for s in instance.get_run_step_stats(done.dagster_run.run_id)}

    def span(*keys: str) -> float:
        return sum(steps[k].end_time - steps[k].start_time for k in keys if k in steps)

    return {
        "total_s": served - crossed,
        "tick_wait_s": run.create_timestamp.timestamp() - crossed,
        "run_start_s": done.start_time - run.create_timestamp.timestamp(),
        "feedback_and_training_s": span("user_feedback", "trained_model"),
        "evaluation_and_promotion_s": span("evaluation_report", "deployed_model"),
        "run_overhead_s": (done.end_time - done.start_time)
        - span("user_feedback", "trained_model", "evaluation_report", "deployed_model"),
        "app_switch_s": served - done.end_time,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, a 5 s sensor interval")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--interval", type=int, default=None, help="sensor interval (s)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    interval = args.interval or (5 if args.quick else 30)
    window, epochs = (3, 1) if args.quick else (7, 3)
    train = {"epochs": epochs, "window_days": window, "holdout_days": 2}
    run_config = {
        "ops": {
            "trained_model": {"config": train},
            "deployed_model": {"config": {"force": True}},  # every round promotes (recorded)
        }
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "stack" / "flywheel"
        spec, raw, registry = build_champion(home, window, epochs)
        today = raw.read(SERVE_DAY)
        label, reason = compute_labels(today, spec)
        ok = (reason == "").to_numpy()
        records, labels = records_for_api(today[ok], spec), label[ok].astype(int).tolist()
        store = FeedbackStore(FlywheelHome.at(home).feedback_url)
        store.upgrade()
        first = min(PartitionStore(home / "raw_data").days()).isoformat()
        env = {
            "FLYWHEEL_START_DATE": first,
            "FLYWHEEL_FEEDBACK_SENSOR": "running",
            "FLYWHEEL_FEEDBACK_MIN_NEW": str(MIN_NEW),
            "FLYWHEEL_FEEDBACK_INTERVAL_SECONDS": str(interval),
            "FLYWHEEL_FEEDBACK_RUN_CONFIG": json.dumps(run_config),
        }
        stack = start_dagster(root / "stack", env)
        try:
            with (
                DagsterInstance.from_config(str(stack.dagster_home)) as instance,
                Server(create_app(registry, store, poll_seconds=0.5)) as server,
                httpx.Client(base_url=server.url, timeout=60) as client,
            ):
                for r in range(rounds):
                    part = slice(r * MIN_NEW, (r + 1) * MIN_NEW)
                    part = (records[part], labels[part])
                    results.append(one_round(stack, client, instance, registry, *part, r * MIN_NEW))
                    parts = ", ".join(f"{k} {v:.1f}" for k, v in results[-1].items())
                    print(f"round {r + 1}: {parts}")
        finally:
            stack.stop()
            store.close()
        feats = PartitionStore(home / "cleaned_features")
        started = time.perf_counter()
        params = TrainParams(epochs=epochs, window_days=window, holdout_days=2)
        train_version(spec, feats, registry, params, root / "scratch", raw=raw)
        direct = time.perf_counter() - started

    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    env_info = environment()
    print(
        f"\nfeedback crossing the threshold ({MIN_NEW} rows) -> new champion served, real"
        f" dagster-daemon, sensor every {interval} s, {rounds} round(s), flights {window}-day"
        f" window, {epochs} epoch(s); B: the same training called directly;"
        f" {describe_environment(env_info)}"
    )
    rows = [
        {"measure": f"part: {k.removesuffix('_s').replace('_', ' ')} (s)", "A": f"{v:.1f}",
         "B": "-", "ratio": "-", "goal": "-", "met": "-"}
        for k, v in med.items() if k != "total_s"
    ]  # fmt: skip
    total = med["total_s"]
    rows.append(
        {"measure": "median feedback -> served (s)", "A": f"{total:.1f}", "B": f"{direct:.1f}",
         "ratio": f"{total / direct:.1f}x", "goal": "A <= 60 s",
         "met": "yes" if total <= 60 else "no"}
    )  # fmt: skip
    print_table(rows)
    path = write_results(
        args.results_dir,
        "feedback_latency",
        {"environment": env_info, "quick": args.quick, "interval_s": interval,
         "rounds": results, "median": med, "direct_training_s": direct, "table": rows},
    )  # fmt: skip
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
