"""``flywheel simulate``: real rows to /predict, each answered with its true outcome."""

from __future__ import annotations

import datetime as dt

import httpx
import pandas as pd
import pytest
import yaml

from pipeline.data.storage import PartitionStore
from pipeline.feedback.simulate import recent_rows, simulate
from pipeline.home import FlywheelHome
from pipeline.task import load_task, parse_task
from tests.helpers import CHURN_START, CHURN_TASK, build_home, make_churn_frame, served_app

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("simulate"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path, TOKEN) as (store, url):
        yield spec, home_dir, registry, store, url


@pytest.mark.slow
def test_recent_rows_are_the_newest_raw_days_of_the_home(home):
    spec, home_dir, _ = home
    rows = recent_rows(spec, FlywheelHome.at(home_dir), days=3)
    newest = [CHURN_START + dt.timedelta(days=k) for k in (18, 19, 20)]
    assert len(rows) == 3 * 120
    assert sorted(set(rows["event_time"].dt.date)) == newest
    expected, _ = PartitionStore(home_dir / "raw_data").read_many(newest)
    pd.testing.assert_frame_equal(rows, expected)


def test_recent_rows_without_raw_data_reads_the_sources_last_days(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    frame = make_churn_frame(days=4, rows_per_day=5)
    # the four days ending today: today's rows are not read, the three before are
    frame["event_time"] += pd.Timestamp(today - dt.timedelta(days=3), tz="UTC") - pd.Timestamp(
        CHURN_START, tz="UTC"
    )
    data = tmp_path / "task" / "data"
    data.mkdir(parents=True)
    frame.to_parquet(data / "rows.parquet", index=False)
    (tmp_path / "task" / "t.yaml").write_text(yaml.safe_dump(CHURN_TASK))
    spec = load_task(tmp_path / "task" / "t.yaml")
    rows = recent_rows(spec, FlywheelHome.at(tmp_path / "empty_home"), days=3)
    assert len(rows) == 15
    assert set(rows["event_time"].dt.date) == {today - dt.timedelta(days=k) for k in (1, 2, 3)}


def _rows_with_known_labels(spec, home_dir) -> pd.DataFrame:
    """Raw rows whose label is YES exactly on the basic plan; rows with usage -1 have none."""
    rows = recent_rows(spec, FlywheelHome.at(home_dir), days=2).reset_index(drop=True)
    rows["churned"] = (rows["plan"] == "basic").map({True: "YES", False: "NO"}).astype(object)
    rows.loc[:29, "churned"] = None
    rows.loc[:29, "usage"] = -1.0
    return rows


@pytest.mark.slow
def test_simulate_sends_predictions_and_their_true_labels_as_feedback(served):
    spec, home_dir, registry, store, url = served
    rows = _rows_with_known_labels(spec, home_dir)
    summary = simulate(url, rows, spec, predictions=45, token=TOKEN, batch_size=20, seed=3)
    assert summary["predictions"] == 45
    assert summary["feedback"] == 45 and summary["duplicates"] == 0
    assert summary["model_versions"] == [registry.champion()]
    assert store.counts() == {"predictions": 45, "feedback": 45}
    examples = store.labelled_examples()
    assert len(examples) == 45
    assert (examples["usage"] != -1.0).all()  # rows without a usable label are never sent
    truth = (examples["plan"] == "basic").astype(int)
    assert examples["feedback_label"].tolist() == truth.tolist()
    assert set(examples["feedback_source"]) == {"simulate"}
    assert set(examples["model_version"]) == {registry.champion()}
    assert summary["positive_rate"] == pytest.approx(truth.mean())


@pytest.mark.slow
def test_simulate_is_reproducible_with_a_seed(served):
    spec, home_dir, _, store, url = served
    rows = _rows_with_known_labels(spec, home_dir)
    simulate(url, rows, spec, predictions=10, token=TOKEN, seed=5, source="a")
    simulate(url, rows, spec, predictions=10, token=TOKEN, seed=5, source="b")
    examples = store.labelled_examples()
    first, second = examples.iloc[:10], examples.iloc[10:]
    columns = [*spec.input_columns, "feedback_label"]
    assert first[columns].reset_index(drop=True).equals(second[columns].reset_index(drop=True))


@pytest.mark.slow
def test_simulate_without_the_token_is_refused(served):
    spec, home_dir, _, store, url = served
    with pytest.raises(httpx.HTTPStatusError, match="401"):
        simulate(url, _rows_with_known_labels(spec, home_dir), spec, predictions=2)
    assert store.counts() == {"predictions": 0, "feedback": 0}


def test_simulate_needs_a_row_with_a_usable_label():
    spec = parse_task(CHURN_TASK)
    rows = make_churn_frame(days=1, rows_per_day=3)
    rows["churned"] = None
    with pytest.raises(ValueError, match="no rows with a usable label"):
        simulate("http://127.0.0.1:9", rows, spec, predictions=1)
