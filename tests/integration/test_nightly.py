"""The daemon fires nightly_retrain (cron every minute here) and its run deploys a model."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline.model.registry import ModelRegistry
from tests.integration.conftest import (
    NEWEST_LABELLED,
    PARTITIONS,
    YESTERDAY,
    schedule_ticks,
    start_schedule,
    stop_schedule,
)
from tests.servers import DagsterStack, wait_until

pytestmark = pytest.mark.slow


def test_daemon_fires_nightly_retrain_and_deploys(stack: DagsterStack, nightly_run: dict[str, Any]):
    assert nightly_run["status"] == "SUCCESS", stack.logs()
    assert nightly_run["jobName"] == "nightly_job"
    tags = nightly_run["tags"]
    # Yesterday, and the 29 days before it whose labels matured since (flights: 30-day delay):
    # one range, the whole backfilled month.
    assert tags["flywheel/partition"] == f"{PARTITIONS[0]}...{YESTERDAY}"
    assert tags["dagster/asset_partition_range_end"] == YESTERDAY
    assert tags["flywheel/reason"].startswith("nightly retrain, tick ")

    decision = nightly_run["deployed_model"]  # as the run left it (conftest)
    registry = ModelRegistry(stack.flywheel_home / "models")
    assert decision["champion"] and registry.path(decision["champion"]).is_dir()
    # The retrain used the newest labelled window: it ends with the newest day whose labels
    # matured on the run's clock (as_of, 20 days ahead in this stack).
    training = registry.read_json(decision["challenger"], "training.json")
    assert training["window"]["holdout_end"] == NEWEST_LABELLED
    assert training["train_days_missing"] == []
    # The schedule's run config reached the run: small training (epochs 2, 7 days).
    assert training["params"]["epochs"] == 2 and training["params"]["window_days"] == 7


def test_missed_nights_are_caught_up_once(stack: DagsterStack, nightly_run: dict[str, Any]):
    """With the daemon down for three ticks (cron: every minute), the daemon, once back,
    launches one run for them, not three."""
    stack.stop_process("daemon")
    state_id = start_schedule(stack)
    started = time.time()
    first_missed = (started // 60 + 1) * 60
    try:
        time.sleep(first_missed + 2 * 60 + 5 - time.time())  # three ticks pass with no daemon
        back = time.time()
        stack.start_daemon()
        wait_until(  # until that tick is done: it is STARTED while it launches its run
            lambda: [
                t
                for t in schedule_ticks(stack)
                if t["timestamp"] >= first_missed and t["status"] != "STARTED"
            ],
            120,
            "the daemon's first tick after its restart, done",
            2.0,
            stack.logs,
        )
    finally:
        stop_schedule(stack, state_id)
    missed = [t for t in schedule_ticks(stack) if first_missed <= t["timestamp"] < back]
    assert [t["timestamp"] for t in missed] == [first_missed + 2 * 60], missed
    (tick,) = missed
    assert tick["status"] == "SUCCESS" and len(tick["runIds"]) == 1, tick
    run = stack.wait_for_run(tick["runIds"][0], timeout=300)
    assert run["status"] == "SUCCESS", stack.logs()
