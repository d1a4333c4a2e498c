"""Feedback as training rows: each labelled prediction's logged inputs, cleaned like a day."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.cleaning import QUARANTINE_REASON
from pipeline.data.storage import PartitionStore, write_parquet_atomic
from pipeline.feedback.examples import FEEDBACK_META, clean_feedback
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.task import LABEL_COLUMN, parse_task
from tests.helpers import CHURN_CHECKS, CHURN_START, CHURN_TASK

DAY = CHURN_START + dt.timedelta(days=3)  # 2025-03-04: its lagged rates read 03-01..03-03


@pytest.fixture
def spec():
    return parse_task(CHURN_TASK)


@pytest.fixture
def raw(tmp_path) -> PartitionStore:
    """Raw history: north is 1 of 2 positive over the 3 days before DAY, south 1 of 1."""
    store = PartitionStore(tmp_path / "raw_data")
    rows = [
        (CHURN_START, "north", "YES"),
        (CHURN_START + dt.timedelta(days=1), "north", "NO"),
        (CHURN_START + dt.timedelta(days=2), "south", "YES"),
        (DAY, "south", "NO"),  # on the day itself: not history
    ]
    for i, (day, region, churned) in enumerate(rows):
        store.write(
            day,
            pd.DataFrame(
                {
                    "event_time": [pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=6)],
                    "customer_id": [i],
                    "plan": ["basic"],
                    "region": [region],
                    "usage": [10.0],
                    "tenure": [3.0],
                    "support_calls_after": [0],
                    "churned": [churned],
                }
            ),
        )
    return store


def _example(fid: int, label: int, region: str = "north", **record) -> dict:
    return {
        "event_time": f"{DAY.isoformat()}T12:00:00+00:00",
        "plan": "pro",
        "region": region,
        "usage": 5.5,
        "tenure": 12.0,
        **record,
        "feedback_id": fid,
        "feedback_label": label,
        "feedback_source": "api",
        "prediction_id": f"p{fid}",
        "model_version": "v1",
    }


def test_labels_from_feedback_survive_cleaning_with_the_lagged_rates(spec, raw):
    examples = pd.DataFrame(
        [_example(3, 1, "north"), _example(1, 0, "south"), _example(2, 1, "east")]
    )
    found = clean_feedback(spec, examples, raw)
    features = found.features
    assert features["feedback_id"].tolist() == [1, 2, 3]  # sorted by feedback id
    assert features[LABEL_COLUMN].tolist() == [0, 1, 1]
    assert features["prediction_id"].tolist() == ["p1", "p2", "p3"]
    assert set(FEEDBACK_META) <= set(features.columns)
    rates = features["rate_region_3d"].tolist()
    assert rates[0] == 1.0 and np.isnan(rates[1]) and rates[2] == 0.5  # south, east, north
    assert features["calendar_day_of_week"].tolist() == ["1"] * 3  # 2025-03-04 is a Tuesday
    assert found.quarantine.empty
    assert found.newest_feedback_id == 3


def test_a_bad_timestamp_is_quarantined_with_its_reason(spec, raw):
    examples = pd.DataFrame([_example(1, 1), _example(2, 0, event_time="last tuesday")])
    found = clean_feedback(spec, examples, raw)
    assert found.features["feedback_id"].tolist() == [1]
    assert found.quarantine["feedback_id"].tolist() == [2]
    assert found.quarantine[QUARANTINE_REASON].tolist() == [
        "timestamp: 'event_time' does not parse"
    ]
    assert found.quarantine["event_time"].tolist() == ["last tuesday"]
    assert "churned" not in found.quarantine.columns  # the made-up label value is dropped
    assert found.newest_feedback_id == 2


def test_a_row_that_fails_cleaning_is_quarantined_and_the_others_keep_their_labels(spec, raw):
    examples = pd.DataFrame([_example(1, 1), _example(2, 0, usage="lots"), _example(3, 0)])
    found = clean_feedback(spec, examples, raw)
    assert found.features["feedback_id"].tolist() == [1, 3]
    assert found.features[LABEL_COLUMN].tolist() == [1, 0]
    assert found.quarantine[QUARANTINE_REASON].tolist() == ["numeric: 'usage' is not a number"]
    assert found.quarantine["prediction_id"].tolist() == ["p2"]


def test_examples_on_several_days_are_cleaned_each_with_its_own_history(spec, raw):
    later = (DAY + dt.timedelta(days=1)).isoformat()  # 03-05 reads 03-02..03-04
    examples = pd.DataFrame(
        [_example(1, 1, "south"), _example(2, 0, "south", event_time=f"{later}T01:00:00Z")]
    )
    features = clean_feedback(spec, examples, raw).features
    assert features["rate_region_3d"].tolist() == [1.0, 0.5]  # 03-05 also counts 03-04's NO


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({**CHURN_TASK, **CHURN_CHECKS}, [1, 0]),  # the negative is an allowed value: "NO"
        ({**CHURN_TASK, "label": {"column": "churned", "greater_than": 15}}, [1, 0]),
    ],
)
def test_feedback_labels_map_back_through_the_tasks_label_rule(task, expected, raw):
    found = clean_feedback(parse_task(task), pd.DataFrame([_example(1, 1), _example(2, 0)]), raw)
    assert found.features[LABEL_COLUMN].tolist() == expected
    assert found.quarantine.empty


def test_an_empty_input(spec, raw):
    found = clean_feedback(spec, pd.DataFrame(), raw)
    assert found.features.empty
    assert list(found.features.columns) == [
        "event_time",
        LABEL_COLUMN,
        *FEEDBACK_META,
        "feedback_label",
    ]
    assert list(found.quarantine.columns) == [*spec.input_columns, QUARANTINE_REASON]
    assert found.newest_feedback_id is None


def test_examples_from_a_real_feedback_store(spec, raw, tmp_path):
    store = FeedbackStore(FlywheelHome.at(tmp_path).feedback_url)
    store.upgrade()
    records = [
        {k: v for k, v in _example(0, 0, region).items() if k in spec.input_columns}
        for region in ("north", "south")
    ]
    ids = store.log_predictions("v7", records, [0.9, 0.2], threshold=0.5)
    store.add_feedback(ids[0], 0, source="api")
    store.add_feedback(ids[1], 1, source="api")
    store.add_feedback(ids[1], 1, source="audit")  # agrees: one example, both sources
    store.add_feedback(ids[0], 1, source="audit")  # disagrees: quarantined, never flipped
    found = clean_feedback(spec, store.labelled_examples(), raw)
    store.close()
    features = found.features
    assert features["prediction_id"].tolist() == [ids[1]]
    assert features[LABEL_COLUMN].tolist() == [1]
    assert features["feedback_source"].tolist() == ["api,audit"]
    assert features["feedback_id"].tolist() == [3]  # the newest of its votes
    assert features["model_version"].tolist() == ["v7"]
    assert features["rate_region_3d"].tolist() == [1.0]
    assert found.quarantine["prediction_id"].tolist() == [ids[0]]
    assert found.quarantine[QUARANTINE_REASON].tolist() == [
        "label: sources disagree (api=0, audit=1)"
    ]
    assert found.newest_feedback_id == 4


def test_a_row_whose_cleaning_raises_is_quarantined_alone(spec, raw):
    examples = pd.DataFrame([_example(1, 1), _example(2, 0, usage=10**400), _example(3, 0)])
    found = clean_feedback(spec, examples, raw)
    assert found.features["feedback_id"].tolist() == [1, 3]
    assert found.features[LABEL_COLUMN].tolist() == [1, 0]
    assert found.quarantine["feedback_id"].tolist() == [2]
    assert found.quarantine[QUARANTINE_REASON].tolist() == [
        "cleaning failed: OverflowError: int too large to convert to float"
    ]


def test_text_that_is_not_valid_unicode_is_quarantined_and_kept_escaped(spec, raw, tmp_path):
    examples = pd.DataFrame(
        [_example(1, 1), _example(2, 0, plan="\ud800"), _example(3, 1, note={"a": [1]}),
         _example(4, 0, note="x", usage="lots")],
        dtype=object,
    )  # fmt: skip
    found = clean_feedback(spec, examples, raw)
    assert found.features["feedback_id"].tolist() == [1, 3]
    assert found.quarantine["feedback_id"].tolist() == [2, 4]
    assert found.quarantine[QUARANTINE_REASON].tolist() == [
        "text: 'plan' is not valid Unicode (a lone surrogate)",
        "numeric: 'usage' is not a number",
    ]
    assert found.quarantine["plan"].tolist() == ["\\ud800", "pro"]
    write_parquet_atomic(found.quarantine, tmp_path / "q.parquet")  # a file can hold it
    write_parquet_atomic(found.features, tmp_path / "f.parquet")
