"""Labels that mature: a day's batch labels after ``label_delay_days``, feedback at once, and
one label per event (the batch wins), on the churn data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.maturity import label_matured, run_clock
from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.labelled import LABEL_SOURCE, drop_superseded, row_identity, select_rows
from pipeline.steps import build_features_day, ingest_day
from pipeline.task import LABEL_COLUMN, load_task
from tests.helpers import CHURN_START, write_churn_task

DELAY = 5
DAYS = 21


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    spec = load_task(write_churn_task(root, label_delay_days=DELAY))
    raw, feats = PartitionStore(root / "raw_data"), PartitionStore(root / "cleaned_features")
    source = make_source(spec)
    as_of = CHURN_START + dt.timedelta(days=DAYS)  # the day after the last one
    for i in range(DAYS):
        ingest_day(source, raw, CHURN_START + dt.timedelta(days=i))
        build_features_day(spec, raw, feats, CHURN_START + dt.timedelta(days=i), as_of=as_of)
    return spec, raw, feats, as_of


def test_a_row_one_day_short_of_maturity_is_unlabelled_and_on_the_day_it_is_labelled(
    stores, tmp_path
):
    spec, raw, _, _ = stores
    day = CHURN_START + dt.timedelta(days=10)
    # A missing label on a day not matured is no reason to quarantine: the label is not known.
    frame = raw.read(day)
    frame.loc[0, "churned"] = None
    raw_copy = PartitionStore(tmp_path / "raw_data")
    for d in spec.history_days(day):
        raw_copy.write(d, raw.read(d))
    raw_copy.write(day, frame)
    feats = PartitionStore(tmp_path / "cleaned_features")
    short = build_features_day(spec, raw_copy, feats, day, as_of=day + dt.timedelta(DELAY - 1))
    assert not short.labelled and short.unlabelled_rows == len(frame) == short.rows
    assert short.quarantined == 0 and short.positive_rate is None
    assert feats.read(day)[LABEL_COLUMN].isna().all()
    assert short.label_matures_on == day + dt.timedelta(DELAY)
    on_time = build_features_day(spec, raw_copy, feats, day, as_of=day + dt.timedelta(DELAY))
    assert on_time.labelled and on_time.unlabelled_rows == 0
    assert on_time.quarantine_reasons == {"label: 'churned' is missing": 1}
    labels = feats.read(day)[LABEL_COLUMN]
    assert labels.dtype == "int8"
    expected = (frame["churned"].iloc[1:] == "YES").astype("int8").to_numpy()
    assert (labels.to_numpy() == expected).all()


@pytest.mark.parametrize(
    ("days_since", "matured"), [(DELAY - 1, False), (DELAY, True), (DELAY + 9, True)]
)
def test_label_matured(days_since, matured):
    day = dt.date(2025, 3, 1)
    assert label_matured(day, day + dt.timedelta(days_since), DELAY) is matured


def test_run_clock_is_as_of_or_today_and_names_a_bad_date():
    now = dt.datetime(2025, 3, 9, 23, 30, tzinfo=dt.UTC)
    assert run_clock("", now) == dt.date(2025, 3, 9)
    assert run_clock("2025-01-02", now) == dt.date(2025, 1, 2)
    with pytest.raises(ValueError, match="run config 'as_of' is '2025-13-01': expected"):
        run_clock("2025-13-01", now)


def test_windows_count_labelled_days_and_feedback_fills_the_gap(stores):
    spec, raw, feats, as_of = stores
    newest_matured = as_of - dt.timedelta(DELAY)  # 2025-03-17
    chosen = select_rows(spec, feats, window_days=5, holdout_days=3)
    assert chosen.window.holdout_days[-1] == newest_matured
    assert chosen.holdout[LABEL_SOURCE].eq("batch").all()
    # Feedback for the newest (unlabelled) day: the holdout moves to it.
    newest = as_of - dt.timedelta(days=1)
    labelled_copy = _labelled_frame(spec, raw, newest)
    fb = labelled_copy.iloc[:30]
    chosen = select_rows(spec, feats, window_days=5, holdout_days=3, feedback=fb)
    assert chosen.window.holdout_days == [newest_matured - dt.timedelta(1), newest_matured,
                                          newest]  # fmt: skip
    assert chosen.holdout[LABEL_SOURCE].value_counts().to_dict()["feedback"] == 30
    assert chosen.feedback_days == {newest.isoformat(): 30} and chosen.superseded == 0
    # An earlier clock hides labels stored since: the newest matured day then is 03-15.
    earlier = select_rows(spec, feats, 5, 3, as_of=as_of - dt.timedelta(days=2))
    assert earlier.window.holdout_days[-1] == newest_matured - dt.timedelta(days=2)
    assert earlier.train[LABEL_COLUMN].notna().all()


def _labelled_frame(spec, raw, day):
    from pipeline.data.cleaning import clean_day

    return clean_day(raw.read(day), day, spec, raw.read_many(spec.history_days(day))[0]).features


def test_a_feedback_label_for_a_day_whose_batch_label_matured_counts_once_and_the_batch_wins(
    stores,
):
    spec, _, feats, _ = stores
    day = CHURN_START + dt.timedelta(days=14)  # matured
    batch = feats.read(day)
    flipped = (1 - batch[LABEL_COLUMN].iloc[:10]).astype("int8")  # feedback says otherwise
    fb = batch.iloc[:10].assign(**{LABEL_COLUMN: flipped})
    kept, dropped = drop_superseded(fb, batch, spec)
    assert dropped == 10 and kept.empty
    chosen = select_rows(spec, feats, window_days=5, holdout_days=3, feedback=fb)
    assert day in chosen.window.holdout_days
    assert chosen.superseded == 10 and chosen.feedback_days == {}
    on_day = chosen.holdout[pd.to_datetime(chosen.holdout[spec.timestamp]).dt.date == day]
    assert len(on_day) == len(batch)  # once each, with the batch label
    assert on_day[LABEL_SOURCE].eq("batch").all()
    assert (on_day[LABEL_COLUMN].to_numpy() == batch[LABEL_COLUMN].to_numpy()).all()
    # A day of the training window: the same.
    early = CHURN_START + dt.timedelta(days=11)
    fb = feats.read(early).iloc[:7]
    chosen = select_rows(spec, feats, window_days=5, holdout_days=3, feedback=fb)
    assert early in chosen.window.train_days
    assert chosen.superseded == 7 and chosen.feedback.empty


def test_row_identity_matches_the_same_event_across_timestamp_units(stores):
    spec, _, feats, _ = stores
    frame = feats.read(CHURN_START + dt.timedelta(days=3)).iloc[:20]
    other = frame.assign(**{spec.timestamp: frame[spec.timestamp].astype("datetime64[ns, UTC]")})
    assert (row_identity(frame, spec) == row_identity(other, spec)).all()
    moved = frame.assign(usage=frame["usage"] + 1)
    assert not np.isin(row_identity(moved, spec), row_identity(frame, spec)).any()
    assert len(set(row_identity(frame, spec))) == len(frame)


def test_a_version_trained_with_feedback_is_judged_on_it_and_the_report_counts_sources(
    stores, tmp_path
):
    from pipeline.evaluation import evaluate_version
    from pipeline.model.params import TrainParams
    from pipeline.model.registry import ModelRegistry
    from pipeline.steps import train_version

    spec, raw, feats, as_of = stores
    newest = as_of - dt.timedelta(days=1)  # not matured: feedback only
    fb = pd.concat([_labelled_frame(spec, raw, d) for d in (newest - dt.timedelta(1), newest)])
    registry = ModelRegistry(tmp_path / "models")
    params = TrainParams(epochs=1, window_days=5, holdout_days=3, batch_size=256, members=1,
                         hidden_sizes=[8])  # fmt: skip
    trained = train_version(spec, feats, registry, params, tmp_path / "scratch", extra=fb,
                            as_of=as_of)  # fmt: skip
    training = trained.training
    assert training["window"]["holdout_end"] == newest.isoformat()
    assert training["holdout_rows"] == {"batch": 120, "feedback": 240}  # one matured day
    assert training["feedback_rows"] == 0  # both feedback days are held out
    assert training["label_delay_days"] == DELAY and training["as_of"] == as_of.isoformat()
    report = evaluate_version(feats, registry, trained.version).report
    assert report["holdout_rows"] == {"batch": 120, "feedback": 240} and report["rows"] == 360
