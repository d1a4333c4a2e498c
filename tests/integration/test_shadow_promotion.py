"""Promotion on live traffic with the real dagster-daemon and dagster-webserver on 127.0.0.1, the
real serving app, and simulated traffic answered with the true outcome: the shadow sensor starts
``shadow_evaluation`` runs that promote a clearly better candidate, roll a forced worse champion
back on probation, and reject a clearly worse candidate, while the app answers every request.

One stack for the three, in turn (each starts from the state the one before left): a stack takes
about half a minute to start, a shadow run a few seconds."""

from __future__ import annotations

import json

import httpx
import pytest
from dagster import AssetKey, DagsterInstance

from assets.shadow_sensor import SHADOW_RUN_KEY_TAG
from pipeline.data.storage import PartitionStore
from pipeline.evaluation import evaluate_version
from pipeline.feedback.simulate import simulate
from pipeline.feedback.store import FeedbackStore
from pipeline.gate import GatePolicy
from pipeline.home import FlywheelHome
from pipeline.model.candidate import PROBATION
from pipeline.promotion import deploy
from pipeline.serving.app import create_app
from pipeline.serving.features import records_for_api
from tests.helpers import Server, build_shadow_home, traffic_rows
from tests.servers import dagster_stack, wait_until

TRAFFIC = 320  # predictions with feedback per step: above the 200 labels the rules wait for


def _shadow_runs_until(stack, done, what: str) -> list[dict]:
    """Waits until ``done()`` (the sensor may start a run for part of the feedback first, which
    waits for more labels); then every shadow run has ended well. Returns them, newest first."""
    wait_until(done, 150, what, 1, stack.logs)
    runs = [r for r in stack.runs() if any(t["key"] == SHADOW_RUN_KEY_TAG for t in r["tags"])]
    ended = [stack.wait_for_run(r["runId"], timeout=120) for r in runs]
    assert ended and all(r["status"] == "SUCCESS" for r in ended), stack.logs()
    return ended


@pytest.mark.slow
def test_the_shadow_sensor_promotes_rolls_back_and_rejects_on_live_traffic(tmp_path):
    spec, home, registry, v = build_shadow_home(tmp_path / "data", tmp_path / "stack" / "flywheel")
    registry.promote(v["bad"], reason="test: the weak champion")
    registry.set_candidate(v["good"], v["bad"], "test: passed the offline gate")
    env = {
        "FLYWHEEL_TASK": str(tmp_path / "data" / "data" / "task" / "churn.yaml"),
        "FLYWHEEL_START_DATE": "2025-03-01",
        "FLYWHEEL_FEEDBACK_SENSOR": "running",  # and the shadow sensor beside it
        "FLYWHEEL_FEEDBACK_MIN_NEW": "1000000",  # no retraining in this test: the shadow's
        "FLYWHEEL_FEEDBACK_MAX_WAIT_MINUTES": "100000",
        "FLYWHEEL_FEEDBACK_INTERVAL_SECONDS": "2",
        "FLYWHEEL_PROMOTION": "shadow",
    }
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    rows = traffic_rows(home)
    codes: list[int] = []
    with (
        dagster_stack(tmp_path / "stack", env=env) as stack,
        Server(create_app(registry, store, poll_seconds=0.2)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):

        def serving() -> str:
            r = client.post("/predict", json=records_for_api(rows.iloc[:1], spec)[0])
            codes.append(r.status_code)
            return r.json()["model_version"]

        def shadow() -> str | None:
            return client.get("/health").json()["shadow"]["version"]

        # 1. a clearly better candidate is promoted, and then served
        wait_until(lambda: shadow() == v["good"], 10, "the candidate in shadow", 0.2)
        assert simulate(server.url, rows, spec, TRAFFIC, seed=0)["model_versions"] == [v["bad"]]
        _shadow_runs_until(stack, lambda: registry.champion() == v["good"], "the promotion")
        wait_until(lambda: serving() == v["good"], 10, "the app to serve the candidate", 0.2)
        wait_until(lambda: shadow() == v["bad"], 10, "the previous champion in shadow", 0.2)
        assert registry.shadow_record()["role"] == PROBATION

        # 2. a worse model promoted with force is rolled back by itself during probation
        feats = PartitionStore(home / "cleaned_features")
        report = evaluate_version(feats, registry, v["bad"]).report
        forced = deploy(registry, report, GatePolicy(), force=True, promotion="shadow")
        assert forced.promoted and registry.shadow_record()["version"] == v["good"]
        wait_until(lambda: serving() == v["bad"], 10, "the app to serve the forced model", 0.2)
        wait_until(lambda: shadow() == v["good"], 10, "the previous champion in shadow", 0.2)
        simulate(server.url, rows, spec, TRAFFIC, seed=1)
        runs = _shadow_runs_until(stack, lambda: registry.champion() == v["good"], "a rollback")
        wait_until(lambda: serving() == v["good"], 10, "the previous champion again", 0.2)
        record = next(r for r in reversed(registry.history()) if r["action"] == "rollback")
        assert record["reason"] == "probation" and record["comparison"]["ci_high"] < 0
        with DagsterInstance.from_config(str(stack.dagster_home)) as instance:
            shown = instance.fetch_materializations(AssetKey("deployed_model"), limit=5).records
            assert shown[0].run_id in {r["runId"] for r in runs}
            assert shown[0].asset_materialization.metadata["action"].value == "rollback"
            lines = [e.message for e in instance.all_logs(shown[0].run_id) if e.message]
            assert sum(m.startswith("automatic rollback") for m in lines) == 1

        # 3. a clearly worse candidate is rejected, and the champion never changes
        registry.set_candidate(v["bad"], v["good"], "test: passed the offline gate")
        wait_until(lambda: shadow() == v["bad"], 10, "the candidate in shadow", 0.2)
        simulate(server.url, rows, spec, TRAFFIC, seed=2)
        _shadow_runs_until(stack, lambda: registry.shadow_record() is None, "the rejection")
        assert registry.champion() == v["good"]
        assert registry.history()[-1]["action"] == "shadow_reject"
        wait_until(lambda: shadow() is None, 10, "the shadow to end", 0.2)
        assert serving() == v["good"]
        assert client.get("/health").json()["status"] == "ok"
    assert codes and set(codes) == {200}
    assert json.loads(registry.champion_file.read_text())["version"] == v["good"]
    store.close()
