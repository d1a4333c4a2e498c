"""Labels that arrive late, through the real daemon and webserver (the shared stack) and the real
serving app: on the flights task (batch labels after 30 days), predictions and feedback for the
newest days start a feedback_sensor run that trains on them, and live_performance_sensor fills
those days' live_performance."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pandas as pd
import pytest

from assets.sensors import LIVE_RUN_KEY_TAG, RUN_KEY_TAG, run_key
from pipeline.data.labels import compute_labels
from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.model.registry import ModelRegistry
from pipeline.serving.app import create_app
from pipeline.serving.features import records_for_api
from pipeline.task import load_task
from tests.helpers import Server
from tests.integration.conftest import PARTITIONS
from tests.servers import LOCATION, DagsterStack, wait_until

pytestmark = pytest.mark.slow
DAYS = PARTITIONS[-3:]  # unlabelled in the stack: their labels mature in 28..30 days
PER_DAY = 40


def start_sensor(stack: DagsterStack, name: str) -> None:
    data = stack.graphql(
        """mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename
             ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__",
               "sensorName": name}},
    )  # fmt: skip
    assert data["startSensor"]["__typename"] == "Sensor", data


def test_feedback_for_unlabelled_days_trains_and_fills_live_performance(
    stack: DagsterStack, nightly_run: dict[str, Any]
):
    assert nightly_run["status"] == "SUCCESS", stack.logs()
    spec, home = load_task(), stack.flywheel_home
    assert spec.label_delay_days == 30
    raw = PartitionStore(home / "raw_data")
    rows = pd.concat([raw.read(pd.Timestamp(d).date()).iloc[:PER_DAY] for d in DAYS])
    truth, _ = compute_labels(rows, spec)
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)  # the stack's store
    store.upgrade()
    registry = ModelRegistry(home / "models")
    with (
        Server(create_app(registry, store, poll_seconds=0.5)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        answer = client.post("/predict", json={"records": records_for_api(rows, spec)})
        assert answer.status_code == 200, answer.text
        for pred, y in zip(answer.json()["predictions"], truth, strict=True):
            item = {"prediction_id": pred["prediction_id"], "label": int(y), "source": "e2e"}
            assert client.post("/feedback", json=item).status_code == 201
    n = PER_DAY * len(DAYS)
    start_sensor(stack, "feedback_sensor")
    start_sensor(stack, "live_performance_sensor")

    def one_run(tag: str, key: str) -> dict[str, Any]:
        [run] = wait_until(lambda: stack.runs({tag: key}), 120, f"run {key}", 2, stack.logs)
        done = stack.wait_for_run(run["runId"], timeout=300)
        assert done["status"] == "SUCCESS", stack.logs()
        return done

    one_run(RUN_KEY_TAG, run_key(0, n, 0))
    trained = json.loads((home / "assets" / "trained_model.json").read_text())
    training = registry.read_json(trained["version"], "training.json")
    # Window 7 + holdout 2 over labelled days: the newest two feedback days are the holdout,
    # the third joins training; the batch days before are the 20 that matured.
    assert training["feedback_rows_by_day"] == {d: PER_DAY for d in DAYS}
    assert training["holdout_rows"] == {"batch": 0, "feedback": 2 * PER_DAY}
    assert training["feedback_rows"] == PER_DAY and training["window"]["holdout_end"] == DAYS[-1]
    report = registry.read_json(trained["version"], "evaluation.json")
    assert report["holdout_rows"] == {"batch": 0, "feedback": 2 * PER_DAY}

    one_run(LIVE_RUN_KEY_TAG, f"live-1-{n}")
    for day in DAYS:
        live = pd.read_parquet(home / "live_performance" / f"{day}.parquet")
        assert len(live) == PER_DAY and live["label"].notna().sum() == PER_DAY
        assert live["label_source"].eq("feedback").all()
    node = stack.graphql(
        """query { assetNodeOrError(assetKey: {path: ["live_performance"]}) {
             ... on AssetNode { partitionStats { numMaterialized } } } }"""
    )["assetNodeOrError"]
    assert node["partitionStats"]["numMaterialized"] >= len(DAYS)
    assert len(stack.runs({LIVE_RUN_KEY_TAG: f"live-1-{n}"})) == 1  # later ticks: nothing new
    store.close()
