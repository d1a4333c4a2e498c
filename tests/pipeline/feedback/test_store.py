"""The feedback store on SQLite and on a real PostgreSQL, its import command, and the cleaning
of feedback into training examples."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import cli
from pipeline.feedback.records import (
    ConflictingFeedback,
    FeedbackError,
    SchemaError,
    UnknownPrediction,
)
from pipeline.feedback.schema import SCHEMA_VERSION
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = FlywheelHome.at(tmp_path / "home").feedback_url
    else:
        url = request.getfixturevalue("postgres_db").url  # a real server, a database of its own
    store = FeedbackStore(url)
    yield store
    store.close()


def test_schema_is_explicit_and_upgrade_is_idempotent(store):
    assert store.schema_version() is None
    with pytest.raises(SchemaError, match="upgrade"):
        store.require_schema()
    assert store.upgrade() == SCHEMA_VERSION
    assert store.upgrade() == SCHEMA_VERSION
    store.require_schema()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE flywheel_schema SET version = 99"))
    with pytest.raises(SchemaError, match="99"):
        store.upgrade()


def test_feedback_rules(store):
    store.upgrade()
    ids = store.log_predictions("v1", [{"a": 1}, {"a": 2}, {"a": 3}], [0.9, 0.2, 0.6], 0.5)
    assert [store.prediction(i)["decision"] for i in ids] == [1, 0, 1]
    first = store.add_feedback(ids[0], 1, "app")
    again = store.add_feedback(ids[0], 1, "app")
    assert first.created and not again.created and first.id == again.id
    with pytest.raises(ConflictingFeedback):
        store.add_feedback(ids[0], 0, "app")
    second_source = store.add_feedback(ids[0], 0, "audit")  # another source may disagree
    with pytest.raises(UnknownPrediction):
        store.add_feedback("f" * 32, 1, "app")
    with pytest.raises(FeedbackError, match="label"):
        store.add_feedback(ids[1], 3, "app")
    store.add_feedback(ids[1], 0, "app")
    assert store.counts() == {"predictions": 3, "feedback": 3}
    summary = store.summary_after(first.id)
    assert (summary.count, summary.newest_id) == (2, store.newest_feedback_id())
    examples = store.labelled_examples()
    # Every vote, in feedback id order (clean_feedback decides what they make of a prediction).
    assert examples["prediction_id"].tolist() == [ids[0], ids[0], ids[1]]
    assert examples["feedback_label"].tolist() == [1, 0, 0]
    assert examples["feedback_source"].tolist() == ["app", "audit", "app"]
    assert examples["feedback_id"].tolist()[1] == second_source.id
    assert store.labelled_examples(upto_id=first.id)["feedback_label"].tolist() == [1]


def test_concurrent_writers_get_increasing_ids(store):
    store.upgrade()
    ids = store.log_predictions("v1", [{"i": i} for i in range(200)], [0.5] * 200, 0.5)
    errors = []

    def post(part):
        try:
            for pid in part:
                store.add_feedback(pid, 1, "load")
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=post, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    got = store.labelled_examples()["feedback_id"].tolist()
    assert sorted(got) == list(range(min(got), min(got) + 200))


def test_feedback_import_command(tmp_path, capsys):
    home = tmp_path / "home"
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    store.upgrade()
    ids = store.log_predictions("v1", [{"a": 1}, {"a": 2}], [0.9, 0.2], 0.5)
    store.add_feedback(ids[0], 1, "csv")
    file = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "prediction_id": [ids[0], ids[1], "missing", ids[1], None],
            "label": [1, 0, 1, 7, 1],
            "source": ["csv", "csv", "csv", "other", "csv"],
        }
    ).to_csv(file, index=False)
    code = cli.main(["--home", str(home), "feedback", "import", str(file)])
    out = capsys.readouterr().out
    assert code == 2
    assert "accepted 1, already stored 1, rejected 3" in out
    rejected = pd.read_csv(tmp_path / "labels.rejected.csv")
    assert rejected["reason"].tolist() == [
        "prediction_id: no prediction has id 'missing'",
        "label: must be 0 or 1",
        "prediction_id: field required",
    ]
    assert store.counts()["feedback"] == 2
    store.close()


def _version_1_schema(store: FeedbackStore) -> None:
    """The tables as schema version 1 made them: predictions without the shadow columns."""
    from pipeline.feedback import schema

    old = sa.MetaData()
    schema.schema_info.to_metadata(old)
    sa.Table("predictions", old, *[c._copy() for c in schema.predictions.columns
                                   if not c.name.startswith("shadow_")])  # fmt: skip
    schema.feedback.to_metadata(old)
    old.create_all(store.engine)
    with store.engine.begin() as conn:
        conn.execute(schema.schema_info.insert().values(version=1, upgraded_at=pd.Timestamp.now(
            tz="UTC").to_pydatetime()))  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO predictions (id, model_version, created_at, record, score, threshold,"
            " decision) VALUES ('old1', 'v0', CURRENT_TIMESTAMP, '{}', 0.7, 0.5, 1)"))  # fmt: skip


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_rows(store):
    from pipeline.feedback.queries import shadowed_feedback_between, shadowed_labels

    _version_1_schema(store)
    assert store.schema_version() == 1
    store.require_schema(oldest=1)  # readers of version-1 columns go on working
    with pytest.raises(SchemaError, match="schema version 1"):
        store.require_schema()
    store.add_feedback("old1", 1, "app")  # feedback on a row logged before the upgrade
    assert store.upgrade() == SCHEMA_VERSION == 2
    old = store.prediction("old1")
    assert old["score"] == 0.7 and old["shadow_version"] is None and old["shadow_score"] is None
    ids = store.log_predictions("v1", [{"a": 1}, {"a": 2}], [0.9, 0.2], 0.5, "v2", [0.4, 0.1])
    plain = store.log_predictions("v1", [{"a": 3}], [0.6], 0.5)
    assert store.prediction(ids[0])["shadow_version"] == "v2"
    assert store.prediction(ids[1])["shadow_score"] == pytest.approx(0.1)
    assert store.prediction(plain[0])["shadow_version"] is None
    for pid, label in zip([*ids, *plain], [1, 0, 1], strict=True):
        store.add_feedback(pid, label, "app")
    rows = shadowed_labels(store, "v1", "v2")
    assert sorted(rows["prediction_id"]) == sorted(ids)
    assert rows.set_index("prediction_id").loc[ids[0], ["score", "shadow_score", "label"]].tolist(
    ) == [0.9, 0.4, 1.0]  # fmt: skip
    assert shadowed_feedback_between(store, 0, store.newest_feedback_id()) == 2
    assert shadowed_feedback_between(store, 3, store.newest_feedback_id()) == 0


def test_replicas_starting_together_on_a_new_postgresql_database_upgrade_it_once(postgres_db):
    stores = [FeedbackStore(postgres_db.url) for _ in range(4)]  # four serving processes' worth
    barrier, results = threading.Barrier(len(stores)), []

    def start(store: FeedbackStore) -> None:
        barrier.wait()
        try:
            results.append(store.upgrade())
        except Exception as err:  # without the lock: a duplicate CREATE TABLE
            results.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [SCHEMA_VERSION] * len(stores), results
    with stores[0].engine.connect() as conn:
        (rows,) = conn.exec_driver_sql("SELECT count(*) FROM flywheel_schema").one()
    assert rows == 1  # one upgrade recorded, by whichever came first
    for s in stores:
        s.close()
