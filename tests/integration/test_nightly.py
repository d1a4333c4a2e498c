"""The daemon fires nightly_retrain (cron every minute here) and its run deploys a model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.registry import ModelRegistry
from tests.integration.conftest import YESTERDAY
from tests.servers import DagsterStack

pytestmark = pytest.mark.slow


def test_daemon_fires_nightly_retrain_and_deploys(stack: DagsterStack, nightly_run: dict[str, Any]):
    assert nightly_run["status"] == "SUCCESS", stack.logs()
    assert nightly_run["jobName"] == "nightly_job"
    tags = nightly_run["tags"]
    assert tags["flywheel/partition"] == YESTERDAY
    assert tags["dagster/partition"] == YESTERDAY
    assert tags["flywheel/reason"].startswith("nightly retrain, tick ")

    decision = json.loads((stack.flywheel_home / "assets" / "deployed_model.json").read_text())
    registry = ModelRegistry(stack.flywheel_home / "models")
    assert decision["champion"] and registry.champion() == decision["champion"]
    # After the backfill, the retrain used the newest window: it ends with yesterday.
    training = registry.read_json(decision["challenger"], "training.json")
    assert training["window"]["holdout_end"] == YESTERDAY
    assert training["train_days_missing"] == []
    # The schedule's run config reached the run: small training (epochs 2, 7 days).
    assert training["params"]["epochs"] == 2 and training["params"]["window_days"] == 7
