"""The store's reads for live performance, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import math

import pytest

from pipeline.feedback.queries import records_with_feedback_between, scored_predictions
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = FlywheelHome.at(tmp_path / "home").feedback_url
    else:
        url = request.getfixturevalue("postgres_db").url
    store = FeedbackStore(url)
    store.upgrade()
    yield store
    store.close()


def test_a_prediction_is_labelled_where_its_sources_agree_and_unlabelled_where_they_dispute(store):
    agreed, disputed, alone, none = store.log_predictions(
        "v1", [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}], [0.9, 0.8, 0.3, 0.1], 0.5
    )
    store.add_feedback(agreed, 1, source="app")
    store.add_feedback(agreed, 1, source="audit")
    store.add_feedback(disputed, 1, source="app")
    store.add_feedback(disputed, 0, source="someone-else")  # a new name cannot flip it
    store.add_feedback(alone, 0, source="app")
    frame = scored_predictions(store).set_index("prediction_id")
    assert frame.loc[agreed, "feedback_label"] == 1.0
    assert math.isnan(frame.loc[disputed, "feedback_label"])
    assert frame.loc[alone, "feedback_label"] == 0.0
    assert math.isnan(frame.loc[none, "feedback_label"])
    assert frame.loc[alone, "record"] == {"i": 2} and frame.loc[alone, "model_version"] == "v1"
    newest = store.newest_feedback_id()
    touched = records_with_feedback_between(store, newest - 1, newest)
    assert touched == [{"i": 2}]
