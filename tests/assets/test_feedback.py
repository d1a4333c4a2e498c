"""The user_feedback asset through dagster.materialize, against a real SQLite store."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from dagster import materialize

from assets.feedback import user_feedback
from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.serving.features import records_for_api
from resources import FeedbackStoreResource, FlywheelStorage, TaskSource
from tests.helpers import SERVE_DAY, build_home


@pytest.mark.slow
def test_user_feedback_asset_cleans_examples(tmp_path):
    spec, home, _ = build_home(tmp_path)
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    rows = PartitionStore(home / "raw_data").read(SERVE_DAY).head(30)
    records = records_for_api(rows, spec)
    records[0] = {**records[0], "event_time": "not a time"}
    ids = store.log_predictions("v1", records, [0.5] * 30, 0.5)
    for i, pid in enumerate(ids):
        store.add_feedback(pid, i % 2, "test" if i < 20 else "other")
    resources = {
        "feedback": FeedbackStoreResource(url=store.url),
        "storage": FlywheelStorage(home=str(home)),
        "task": TaskSource(task_file=str(tmp_path / "task" / "churn.yaml")),
    }
    result = materialize(
        [user_feedback],
        resources=resources,
        run_config={"ops": {"user_feedback": {"config": {"upto_id": 25}}}},
    )
    meta = result.asset_materializations_for_node("user_feedback")[0].metadata
    assert meta["dagster/row_count"].value == 24 and meta["quarantined_rows"].value == 1
    assert meta["newest_feedback_id"].value == 25
    assert json.loads(json.dumps(meta["by_source"].value)) == {"test": 19, "other": 5}
    examples = pd.read_parquet(FlywheelHome.at(home).feedback_examples_file)
    assert examples["label"].tolist() == [i % 2 for i in range(1, 25)]
    assert examples["rate_region_3d"].notna().all()  # lagged rates from raw_data history
    store.close()


def test_user_feedback_of_a_store_without_tables_is_empty(tmp_path):
    """A fresh machine: nothing served yet, so no tables; the asset materializes, empty."""
    home = FlywheelHome.at(tmp_path / "fw")
    resources = {
        "feedback": FeedbackStoreResource(url=home.feedback_url),
        "storage": FlywheelStorage(home=str(home.root)),
        "task": TaskSource(task_file=""),
    }
    result = materialize([user_feedback], resources=resources)
    meta = result.asset_materializations_for_node("user_feedback")[0].metadata
    assert meta["dagster/row_count"].value == 0
    assert pd.read_parquet(home.feedback_examples_file).empty


@pytest.mark.slow
def test_one_bad_feedback_row_is_quarantined_with_its_reason_and_the_run_goes_on(tmp_path):
    """Rows the API refuses today may already be in a store (logged before the door checked
    them, or by another writer): each is quarantined with its reason, the rest train."""
    spec, home, _ = build_home(tmp_path)
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    rows = PartitionStore(home / "raw_data").read(SERVE_DAY).head(8)
    records = records_for_api(rows, spec)
    records[1] = {**records[1], "plan": "\ud800"}  # not valid Unicode: UTF-8 cannot store it
    records[2] = {**records[2], "note": "\udfff", "event_time": "not a time"}  # and quarantined
    records[3] = {**records[3], "note": {"nested": [1, 2]}, "usage": "lots"}
    records[4] = {**records[4], "note": "text", "tenure": "many"}  # the same column, a string
    records[5] = {**records[5], "usage": 10**400}  # no float holds it: cleaning its day raises
    ids = store.log_predictions("v1", records, [0.5] * 8, 0.5)
    for pid in ids:
        store.add_feedback(pid, 1, "test")
    resources = {
        "feedback": FeedbackStoreResource(url=store.url),
        "storage": FlywheelStorage(home=str(home)),
        "task": TaskSource(task_file=str(tmp_path / "task" / "churn.yaml")),
    }
    result = materialize([user_feedback], resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("user_feedback")[0].metadata
    assert meta["dagster/row_count"].value == 3 and meta["quarantined_rows"].value == 5
    quarantine = pd.read_parquet(FlywheelHome.at(home).feedback_quarantine_file)
    reasons = dict(zip(quarantine["prediction_id"], quarantine["quarantine_reason"], strict=True))
    assert reasons[ids[1]] == "text: 'plan' is not valid Unicode (a lone surrogate)"
    assert reasons[ids[2]] == "text: 'note' is not valid Unicode (a lone surrogate)"
    assert reasons[ids[3]] == "numeric: 'usage' is not a number"
    assert reasons[ids[4]] == "numeric: 'tenure' is not a number"
    assert reasons[ids[5]] == "cleaning failed: OverflowError: int too large to convert to float"
    by_id = quarantine.set_index("prediction_id")
    assert by_id.loc[ids[1], "plan"] == "\\ud800"  # kept, escaped, for whoever looks
    assert by_id.loc[ids[3], "note"] == '{"nested": [1, 2]}'
    examples = pd.read_parquet(FlywheelHome.at(home).feedback_examples_file)
    assert sorted(examples["prediction_id"]) == sorted([ids[0], *ids[6:]])
    assert examples["label"].tolist() == [1, 1, 1]
    store.close()
