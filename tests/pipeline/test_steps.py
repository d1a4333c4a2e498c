"""The life-cycle steps, on the churn data (a user's own Parquet files)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.labelled import Window, choose_window, days_ending
from pipeline.model.params import TrainingError, TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.steps import build_features_day, ingest_day, keep_unassigned, train_version
from pipeline.task import LABEL_COLUMN, load_task
from tests.helpers import CHURN_START, make_churn_frame

TINY = TrainParams(
    epochs=1, window_days=5, holdout_days=2, batch_size=256, hidden_sizes=[8], members=1
)


def _d(day: int) -> dt.date:
    return dt.date(2025, 3, day)


@pytest.mark.parametrize(
    ("end", "n", "expected"),
    [
        (_d(5), 3, [_d(3), _d(4), _d(5)]),
        (_d(5), 1, [_d(5)]),
        (_d(5), 0, []),
        (dt.date(2025, 3, 1), 2, [dt.date(2025, 2, 28), dt.date(2025, 3, 1)]),
    ],
)
def test_days_ending(end, n, expected):
    assert days_ending(end, n) == expected


@pytest.mark.parametrize(
    ("available", "window_days", "holdout_days", "end", "train", "holdout"),
    [
        ([_d(1), _d(10), _d(7)], 3, 2, None, [_d(6), _d(7), _d(8)], [_d(9), _d(10)]),
        ([_d(1), _d(10)], 2, 1, _d(5), [_d(3), _d(4)], [_d(5)]),
        ([], 2, 1, _d(5), [_d(3), _d(4)], [_d(5)]),  # an end needs no available day
    ],
)
def test_choose_window(available, window_days, holdout_days, end, train, holdout):
    window = choose_window(available, window_days, holdout_days, end)
    assert window == Window(train, holdout)
    assert window.to_dict() == {
        "train_start": train[0].isoformat(),
        "train_end": train[-1].isoformat(),
        "holdout_start": holdout[0].isoformat(),
        "holdout_end": holdout[-1].isoformat(),
    }


def test_choose_window_without_any_day_says_what_to_materialize():
    with pytest.raises(TrainingError, match="no labelled days exist yet: materialize raw_data"):
        choose_window([], 5, 2)


@pytest.fixture
def spec(churn_task):
    return load_task(churn_task)


def test_ingest_day_replaces_the_partition_whole(spec, tmp_path):
    raw = PartitionStore(tmp_path / "home" / "raw_data")
    day = CHURN_START + dt.timedelta(days=2)
    raw.write(day, pd.DataFrame({"stale": [1, 2, 3]}))
    ingested = ingest_day(make_source(spec), raw, day)
    expected = make_churn_frame(days=21)
    expected = expected[expected["event_time"].dt.date == day].reset_index(drop=True)
    assert ingested.rows == 120 and ingested.day == day
    assert ingested.columns == list(expected.columns)
    stored = raw.read(day)
    assert "stale" not in stored.columns
    assert sorted(stored["customer_id"]) == sorted(expected["customer_id"])
    assert raw.days() == [day]


def test_keep_unassigned_writes_and_then_removes_the_file(spec, churn_task, tmp_path):
    bad = make_churn_frame(days=1, rows_per_day=2)
    bad["event_time"] = pd.Series(["whenever", None], dtype=object)
    bad_file = churn_task.parent / "data" / "bad.parquet"
    bad.to_parquet(bad_file, index=False)
    path = tmp_path / "home" / "raw_data" / "unassigned.quarantine.parquet"
    kept = keep_unassigned(make_source(spec), path)
    assert (kept.rows, kept.path) == (2, path)
    stored = pd.read_parquet(path)
    assert stored["event_time"].iloc[0] == "whenever" and pd.isna(stored["event_time"].iloc[1])
    assert sorted(stored["quarantine_reason"]) == [
        "timestamp: 'event_time' does not parse",
        "timestamp: 'event_time' is missing",
    ]
    bad_file.unlink()  # the source is fixed: no row is left without a day
    again = keep_unassigned(make_source(spec), path)
    assert again.rows == 0
    assert not path.exists()
    assert keep_unassigned(make_source(spec), path).rows == 0  # no file to remove: fine


def test_build_features_day_names_the_missing_raw_partition(spec, tmp_path):
    raw = PartitionStore(tmp_path / "raw_data")
    feats = PartitionStore(tmp_path / "cleaned_features")
    with pytest.raises(FileNotFoundError) as err:
        build_features_day(spec, raw, feats, _d(5))
    assert "partition 2025-03-05: raw_data has not been materialized" in str(err.value)
    assert str(raw.path(_d(5))) in str(err.value)
    assert feats.days() == []


def test_build_features_day_writes_the_features_and_names_missing_history(spec, tmp_path):
    raw = PartitionStore(tmp_path / "raw_data")
    feats = PartitionStore(tmp_path / "cleaned_features")
    source = make_source(spec)
    days = [CHURN_START + dt.timedelta(days=i) for i in range(2)]
    for day in days:
        ingest_day(source, raw, day)
    first, second = (build_features_day(spec, raw, feats, day) for day in days)
    assert first.history_days_missing == ["2025-02-26", "2025-02-27", "2025-02-28"]
    assert second.history_days_missing == ["2025-02-27", "2025-02-28"]
    assert first.rows + first.quarantined == 120
    assert feats.days() == days
    assert feats.quarantine_path(days[0]).is_file()
    stored = feats.read(days[1])
    assert first.positive_rate == pytest.approx(feats.read(days[0])[LABEL_COLUMN].mean())
    assert stored["rate_region_3d"].notna().all()  # day 1 has day 0 as history
    assert feats.read(days[0])["rate_region_3d"].isna().all()  # day 0 has none


@pytest.fixture
def stores(spec, tmp_path):
    """raw_data and cleaned_features for the first 7 days of the churn data."""
    raw = PartitionStore(tmp_path / "home" / "raw_data")
    feats = PartitionStore(tmp_path / "home" / "cleaned_features")
    source = make_source(spec)
    for i in range(7):
        day = CHURN_START + dt.timedelta(days=i)
        ingest_day(source, raw, day)
        build_features_day(spec, raw, feats, day)
    return raw, feats, ModelRegistry(tmp_path / "home" / "models")


END = CHURN_START + dt.timedelta(days=6)  # train 03-01..03-05, holdout 03-06..03-07


@pytest.mark.slow
def test_train_version_leaves_out_the_days_given(spec, stores, tmp_path):
    raw, feats, registry = stores
    left_out = {
        "2025-03-02": "raw_data: column 'plan' exists: failed",
        "2025-03-07": "cleaned_features: label is never null: 3 of 120 rows",
        "2025-04-01": "outside the window: not reported",
    }
    trained = train_version(
        spec, feats, registry, TINY, tmp_path / "scratch", end=END, raw=raw, left_out=left_out
    )
    kept = [CHURN_START + dt.timedelta(days=i) for i in (0, 2, 3, 4)]
    assert trained.days_left_out == {k: v for k, v in left_out.items() if k != "2025-04-01"}
    assert trained.rows == len(feats.read_many(kept)[0])
    assert trained.window.train_days[0] == CHURN_START  # the nominal window is unchanged
    doc = registry.read_json(trained.version, "training.json")
    assert doc["holdout_days"] == ["2025-03-06"]
    assert doc["days_left_out"] == trained.days_left_out
    assert doc["params"]["window_days"] == 5 and doc["epochs_run"] == 1
    serving = registry.read_json(trained.version, "serving.json")
    assert serving["lagged_rates_as_of"] == "2025-03-08"  # the day after the nominal holdout
    assert registry.versions() == [trained.version]


@pytest.mark.parametrize(
    ("left_out_days", "min_train_days", "message"),
    [
        ([0, 1, 2, 3], 2, r"only 1 usable training day\(s\) \(min_train_days 2\)"),
        ([0, 1, 2, 3, 4], 1, r"only 0 usable training day\(s\) \(min_train_days 1\)"),
        ([5, 6], 1, r"and 0 holdout day\(s\)"),
    ],
)
def test_train_version_fails_when_too_few_days_remain(
    spec, stores, tmp_path, left_out_days, min_train_days, message
):
    raw, feats, registry = stores
    left_out = {(CHURN_START + dt.timedelta(days=i)).isoformat(): "bad" for i in left_out_days}
    with pytest.raises(TrainingError, match=message) as err:
        train_version(
            spec, feats, registry, TINY, tmp_path / "scratch", end=END, raw=raw,
            left_out=left_out, min_train_days=min_train_days,
        )  # fmt: skip
    assert "2025-03-01..2025-03-07" in str(err.value)
    assert (CHURN_START + dt.timedelta(days=left_out_days[0])).isoformat() in str(err.value)
    assert registry.versions() == []


def test_train_version_with_no_rows_in_the_window(spec, stores, tmp_path):
    raw, feats, registry = stores
    with pytest.raises(TrainingError, match=r"no labelled cleaned rows in the training window"):
        train_version(spec, feats, registry, TINY, tmp_path / "s", end=_d(28), raw=raw)
