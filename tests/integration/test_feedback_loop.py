"""The whole loop with the real dagster-daemon and dagster-webserver on 127.0.0.1: feedback posted
through the serving app starts a sensor run that deploys a new model, which the app then serves."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from assets.sensors import RUN_KEY_TAG, run_key
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.serving.app import create_app
from tests.helpers import SERVE_DAY, Server, build_home, serve_rows
from tests.servers import dagster_stack, wait_until

FEEDBACK_ROWS = 40
RUN_CONFIG = {
    "ops": {
        "trained_model": {
            "config": {"epochs": 2, "window_days": 10, "holdout_days": 3, "batch_size": 256}
        },
        # Every challenger is promoted (forced, and recorded as such), so that the test sees a
        # swap: the loop is under test here, the gate in tests/pipeline/test_gate.py.
        "deployed_model": {"config": {"force": True}},
    }
}


@pytest.mark.slow
def test_feedback_retrains_and_the_app_serves_the_new_champion(tmp_path):
    spec, home, registry = build_home(tmp_path / "data", home=tmp_path / "stack" / "flywheel")
    first = registry.champion()
    env = {
        "FLYWHEEL_TASK": str(tmp_path / "data" / "task" / "churn.yaml"),
        "FLYWHEEL_START_DATE": "2025-03-01",
        "FLYWHEEL_FEEDBACK_SENSOR": "running",
        "FLYWHEEL_FEEDBACK_MIN_NEW": str(FEEDBACK_ROWS),
        "FLYWHEEL_FEEDBACK_INTERVAL_SECONDS": "3",
        "FLYWHEEL_FEEDBACK_RUN_CONFIG": json.dumps(RUN_CONFIG),
    }
    store = FeedbackStore(
        FlywheelHome.at(home).feedback_url
    )  # the store definitions.py picks for this home
    store.upgrade()
    with (
        dagster_stack(tmp_path / "stack", env=env) as stack,
        Server(create_app(registry, store, poll_seconds=0.5)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        started = time.monotonic()
        records = serve_rows(spec, home)[:FEEDBACK_ROWS]
        truth = [int(v == "YES") for v in _raw_labels(home)[:FEEDBACK_ROWS]]
        preds = client.post("/predict", json={"records": records}).json()["predictions"]
        for pred, label in zip(preds, truth, strict=True):
            r = client.post("/feedback", json={"prediction_id": pred["prediction_id"],
                                               "label": label, "source": "e2e"})  # fmt: skip
            assert r.status_code == 201, r.text

        key = run_key(0, FEEDBACK_ROWS, 0)
        [run] = wait_until(
            lambda: stack.runs(tags={RUN_KEY_TAG: key}), 120, f"a sensor run {key}", 2, stack.logs
        )
        done = stack.wait_for_run(run["runId"], timeout=240)
        assert done["status"] == "SUCCESS", stack.logs()
        new = registry.champion()
        assert new != first
        training = registry.read_json(new, "training.json")
        # The churn task has no label delay: SERVE_DAY's batch labels are there, so feedback
        # on its events counts once, with the batch label (pipeline/labelled.py).
        assert training["feedback_superseded"] == FEEDBACK_ROWS
        assert training["feedback_rows"] == 0
        wait_until(lambda: client.get("/model").json()["version"] == new, 10, "the swap", 0.2)
        assert client.post("/predict", json=records[0]).json()["model_version"] == new
        assert client.get("/health").json()["status"] == "ok"
        assert time.monotonic() - started < 300
        # One run for this feedback: later ticks see nothing new.
        time.sleep(4)
        assert len(stack.runs(tags={RUN_KEY_TAG: key})) == 1
    store.close()


def _raw_labels(home) -> list[str]:
    from pipeline.data.storage import PartitionStore

    return PartitionStore(home / "raw_data").read(SERVE_DAY)["churned"].tolist()
