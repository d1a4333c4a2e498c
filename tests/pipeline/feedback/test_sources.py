"""The rule for labels from several sources, end to end: predictions and feedback over HTTP to
the real app, then the feedback cleaned into training rows as ``user_feedback`` cleans it.

Each source has one vote per prediction (the other label again from the same source is a 409).
A prediction trains only when every source that labelled it agrees; where they disagree it is
quarantined with the votes as its reason. So a caller who posts under a new source name can
keep a prediction out of training, never flip its label.
"""

from __future__ import annotations

import httpx
import pytest

from pipeline.data.cleaning import QUARANTINE_REASON
from pipeline.data.storage import PartitionStore
from pipeline.feedback.examples import clean_feedback
from tests.helpers import build_home, serve_rows, served_app


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("sources"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path) as (store, url), httpx.Client(base_url=url) as client:
        records = serve_rows(spec, home_dir)[:4]
        answer = client.post("/predict", json={"records": records}).json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        yield spec, home_dir, store, client, ids


def _label(client: httpx.Client, pid: str, label: int, source: str) -> int:
    body = {"prediction_id": pid, "label": label, "source": source}
    return client.post("/feedback", json=body).status_code


def test_a_new_source_cannot_flip_a_label_it_can_only_dispute_it(served):
    spec, home_dir, store, client, ids = served
    assert _label(client, ids[0], 1, "app") == 201
    assert _label(client, ids[0], 0, "app") == 409  # one vote per source
    assert _label(client, ids[0], 0, "someone-else") == 201  # stored: it is evidence
    assert _label(client, ids[1], 0, "app") == 201
    found = clean_feedback(spec, store.labelled_examples(), PartitionStore(home_dir / "raw_data"))
    assert found.features["prediction_id"].tolist() == [ids[1]]  # never trained as label 0
    assert found.features["label"].tolist() == [0]
    assert found.quarantine["prediction_id"].tolist() == [ids[0]]
    assert found.quarantine[QUARANTINE_REASON].tolist() == [
        "label: sources disagree (app=1, someone-else=0)"
    ]
    assert found.newest_feedback_id == store.newest_feedback_id()


def test_sources_that_agree_give_one_example_with_every_source(served):
    spec, home_dir, store, client, ids = served
    for source in ("crm", "app", "audit"):
        assert _label(client, ids[2], 1, source) == 201
    assert _label(client, ids[2], 1, "app") == 200  # the same vote again: a duplicate
    assert _label(client, ids[3], 0, "app") == 201
    found = clean_feedback(spec, store.labelled_examples(), PartitionStore(home_dir / "raw_data"))
    assert found.quarantine.empty
    features = found.features.set_index("prediction_id")
    assert features.loc[ids[2], "label"] == 1 and features.loc[ids[3], "label"] == 0
    assert features.loc[ids[2], "feedback_source"] == "app,audit,crm"
    assert features.loc[ids[2], "feedback_id"] == store.newest_feedback_id() - 1  # the newest
    assert len(features) == 2
