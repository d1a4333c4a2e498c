"""The shadow sensor (its decision without Dagster; cursor and run keys through
build_sensor_context against a real SQLite store and registry) and ``shadow_evaluation``
through ``dagster.materialize``: an automatic rollback shows as a materialization of
``deployed_model`` and one line of the run log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from assets.jobs import shadow_job
from assets.shadow_sensor import SHADOW_RUN_KEY_TAG, build_shadow_sensor, decide_shadow_run
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.model.features import Preprocessor
from pipeline.model.module import FlywheelModule
from pipeline.model.registry import ModelRegistry
from resources import FeedbackStoreResource, FlywheelStorage
from tests.helpers import flywheel_resources, graph_assets, scored

NOW = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)


def _tiny(registry: ModelRegistry, seed: int) -> str:
    torch.manual_seed(seed)
    module = FlywheelModule(cardinalities=[3], n_numeric=2, hidden_sizes=[4])
    prep = Preprocessor(["c"], ["x"], {"c": ["a", "b"]}, {"x": 0.0}, {"x": 1.0})
    return registry.save_version(module, prep, {"threshold": 0.5, "prior": 0.2})


@pytest.fixture
def home(tmp_path: Path):
    """A home with two versions (``old`` promoted first, then ``new``) and a feedback store."""
    layout = FlywheelHome.at(tmp_path / "home")
    registry = layout.registry()
    old, new = _tiny(registry, 0), _tiny(registry, 1)
    registry.promote(old, reason="first")
    registry.promote(new, reason="second")
    store = FeedbackStore(layout.feedback_url)
    store.upgrade()
    yield layout.root, registry, store, old, new
    store.close()


def _label(store, model, shadow, y, served, shadowed) -> None:
    ids = store.log_predictions(model, [{"i": i} for i in range(len(y))], served, 0.5, shadow,
                                shadowed)  # fmt: skip
    for pid, label in zip(ids, y, strict=True):
        store.add_feedback(pid, int(label), "test")


def test_decide_shadow_run():
    candidate = {"version": "c", "role": "candidate", "since": "2026-03-09T12:00:00+00:00"}
    assert decide_shadow_run(4, 9, 3, None, NOW, 7).skip == "nothing is scored in shadow"
    assert decide_shadow_run(4, 9, 3, None, NOW, 7).acted == 9
    found = decide_shadow_run(4, 9, 3, candidate, NOW, 7)
    assert (found.run_key, found.acted) == ("shadow-5-9", 9)
    untouched = decide_shadow_run(4, 9, 0, candidate, NOW, 7)
    assert untouched.skip == "feedback 5-9 labelled no shadowed request" and untouched.acted == 9
    assert decide_shadow_run(9, 9, 0, candidate, NOW, 7).skip == "no new feedback after id 9"
    expired = decide_shadow_run(9, 9, 0, candidate, NOW, 1)  # a day old, shadow_max_days 1
    assert expired.run_key == "shadow-expired-c-2026-03-09T12:00:00+00:00"
    probation = {**candidate, "role": "probation"}  # a probation never expires
    assert decide_shadow_run(9, 9, 0, probation, NOW, 1).skip


def test_the_sensor_runs_shadow_evaluation_once_for_new_shadowed_feedback(home):
    root, registry, store, old, new = home
    sensor = build_shadow_sensor(shadow_job, interval_seconds=1)
    resources = {"feedback": FeedbackStoreResource(url=store.url),
                 "storage": FlywheelStorage(home=str(root))}  # fmt: skip

    def tick(cursor):
        with build_sensor_context(cursor=cursor, resources=resources) as context:
            return sensor(context)

    y, a, _ = scored(n=6)
    _label(store, new, None, y[:3], a[:3], None)  # served with nothing in shadow
    first = tick(None)
    assert not first.run_requests and first.cursor == '{"acted": 3}'
    registry.set_candidate(old, new, "test")
    assert "no new feedback after id 3" in tick(first.cursor).skip_reason.skip_message
    _label(store, new, old, y[3:], a[3:], a[3:] / 2)
    [request] = tick(first.cursor).run_requests
    assert request.run_key == "shadow-4-6" == request.tags[SHADOW_RUN_KEY_TAG]
    assert not tick('{"acted": 6}').run_requests  # the same feedback is never asked again


def test_shadow_evaluation_rolls_back_a_worse_champion_on_probation(home):
    root, registry, store, old, new = home
    registry.start_probation(new, old, labels=200)
    rng = np.random.default_rng(0)
    y, good, _ = scored(n=300)
    worse = np.clip(good + rng.normal(0, 0.4, 300), 0.001, 0.999)
    _label(store, new, old, y, worse, good)  # the new champion is clearly worse
    instance = DagsterInstance.ephemeral()
    resources = {**flywheel_resources(root), "feedback": FeedbackStoreResource(url=store.url)}
    result = materialize([graph_assets()["shadow_evaluation"]], instance=instance,
                         resources=resources)  # fmt: skip
    assert result.success
    assert registry.champion() == old and registry.shadow_record() is None
    meta = result.asset_materializations_for_node("shadow_evaluation")[0].metadata
    assert meta["action"].value == "rollback" and meta["labels"].value == 300
    assert meta["auc_gain_ci_high"].value < 0 and meta["champion"].value == old
    deployed = instance.fetch_materializations(AssetKey("deployed_model"), limit=5).records
    [shown] = [r.asset_materialization for r in deployed]
    assert shown.metadata["champion"].value == old and "rollback" in shown.description
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert sum("automatic rollback" in m for m in logs) == 1
    assert json.loads(registry.log_file.read_text().splitlines()[-2])["reason"] == "probation"
    assert registry.history()[-1]["action"] == "probation_failed"
    # nothing in shadow: the next evaluation changes nothing, and says so
    again = materialize([graph_assets()["shadow_evaluation"]], instance=instance,
                        resources=resources)  # fmt: skip
    assert again.output_for_node("shadow_evaluation")["action"] == "none"
    assert len(instance.fetch_materializations(AssetKey("deployed_model"), limit=5).records) == 1
