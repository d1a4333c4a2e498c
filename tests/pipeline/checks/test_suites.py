"""Data checks without Dagster: the task file's rules, per-day verdicts, one GX call per run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.checks import engine as expectations
from pipeline.checks.results import ERROR, SAMPLE_SIZE, WARN
from pipeline.checks.suites import validate_features, validate_raw
from pipeline.data.cleaning import QUARANTINE_REASON, clean_day
from pipeline.data.sources import FilesSource, SourceError
from pipeline.task import ColumnRule, TaskSpecError, parse_task
from tests.helpers import CHURN_CHECKS, CHURN_START, CHURN_TASK, make_churn_frame

RULES = {
    **CHURN_CHECKS,
    "checks": {**CHURN_CHECKS["checks"], "tenure": {"max_null_fraction": 0.1}},
}
DAYS = [CHURN_START + dt.timedelta(days=i) for i in range(3)]
BAD_DAY = DAYS[1]


@pytest.fixture
def spec():
    return parse_task({**CHURN_TASK, **RULES})


def _days() -> dict[dt.date, pd.DataFrame]:
    frame = make_churn_frame(days=len(DAYS), rows_per_day=50)
    day = frame["event_time"].dt.date
    return {d: frame[day == d].reset_index(drop=True) for d in DAYS}


def test_task_file_checks_and_key_parse(spec):
    rules = dict(spec.checks)
    assert spec.key == ("customer_id",)
    assert rules["usage"] == ColumnRule(range=(0.0, 500.0))
    assert rules["tenure"].max_null_fraction == 0.1


@pytest.mark.parametrize(
    ("checks_value", "message"),
    [
        ({"usage": {"between": [0, 1]}}, "unknown key 'checks.usage.between'"),
        ({"usage": {"range": [5, 1]}}, "'checks.usage.range'"),
        ({"usage": {"max_null_fraction": 2}}, "'checks.usage.max_null_fraction'"),
        ({"plan": {"allowed": []}}, "'checks.plan.allowed'"),
        (["usage"], "'checks' must be a mapping"),
    ],
)
def test_bad_checks_name_the_key(checks_value, message):
    with pytest.raises(TaskSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_task({**CHURN_TASK, "checks": checks_value}, origin="churn.yaml")


def test_unknown_top_key_is_still_an_error():
    with pytest.raises(TaskSpecError, match="unknown key 'check'"):
        parse_task({**CHURN_TASK, "check": {}})


def _inf(f):
    f.loc[:1, "usage"] = np.inf


def _inf_unranged(f):
    f.loc[:1, "tenure"] = -np.inf


def _out_of_range(f):
    f.loc[:2, "usage"] = 9999.0


def _new_category(f):
    f.loc[:3, "plan"] = "platinum"


def _duplicates(f):
    return pd.concat([f, f.iloc[:2]], ignore_index=True)


def _other_day(f):
    f.loc[0, "event_time"] = f.loc[0, "event_time"] + pd.Timedelta(days=5)


def _null_timestamp(f):
    f["event_time"] = f["event_time"].astype(object)
    f.loc[:1, "event_time"] = None


def _missing_column(f):
    return f.drop(columns=["region"])


def _renamed(f):
    return f.rename(columns={"usage": "usage_minutes"})


def _as_strings(f):
    f["usage"] = f["usage"].astype(str)


def _nulls(f):
    f.loc[:9, "tenure"] = np.nan


@pytest.mark.parametrize(
    ("inject", "rule", "severity", "column", "count"),
    [
        (_inf, "'usage' within [0, 500]", WARN, "usage", 2),  # a range also catches inf
        (_inf_unranged, "'tenure' is finite", WARN, "tenure", 2),
        (_out_of_range, "'usage' within [0, 500]", WARN, "usage", 3),
        (_new_category, "'plan' in the allowed values", WARN, "plan", 4),
        (_duplicates, "key ['customer_id'] has no duplicates", WARN, "customer_id", 4),
        (_other_day, "timestamp 'event_time' parses and is on the day", WARN, "event_time", 1),
        (_null_timestamp, "timestamp 'event_time' parses and is on the day", WARN, "event_time", 2),
        (_missing_column, "column 'region' exists", ERROR, "region", 50),
        (_renamed, "column 'usage' exists", ERROR, "usage", 50),
        (_as_strings, "'usage' holds numbers", ERROR, "usage", 50),
        (_nulls, "'tenure' null on at most 10% of rows", WARN, "tenure", 10),
    ],
)
def test_raw_checks_name_the_day_rule_column_and_count(spec, inject, rule, severity, column, count):
    frames = _days()
    changed = inject(frames[BAD_DAY])
    if changed is not None:
        frames[BAD_DAY] = changed
    verdicts = validate_raw(spec, frames)
    failed = {r.rule: r for r in verdicts[BAD_DAY].failures()}
    assert rule in failed, verdicts[BAD_DAY].reasons()
    found = failed[rule]
    assert (found.severity, found.column, found.unexpected_count) == (
        severity,
        column,
        count,
    )
    assert 0 < len(found.sample_unexpected) <= SAMPLE_SIZE or found.unexpected_count
    assert verdicts[BAD_DAY].blocking_failed == (severity == ERROR)
    for day in DAYS:  # the other days of the same call are clean
        if day != BAD_DAY:
            assert verdicts[day].failures() == [], (day, verdicts[day].reasons())


def test_one_gx_validation_answers_every_day(spec, monkeypatch):
    calls = []
    real = expectations.run_suite
    monkeypatch.setattr(expectations, "run_suite", lambda f, r: calls.append(len(f)) or real(f, r))
    frames = _days()
    _out_of_range(frames[BAD_DAY])
    verdicts = validate_raw(spec, frames)
    assert calls == [150]
    assert [d for d, v in verdicts.items() if v.failures()] == [BAD_DAY]
    sample = {r.rule: r for r in verdicts[BAD_DAY].results}["'usage' within [0, 500]"]
    assert sample.sample_unexpected == [9999.0] * 3
    assert sample.observed_value == round(3 / 50, 4)


def test_samples_are_capped_at_twenty(spec):
    frames = _days()
    frames[BAD_DAY]["usage"] = 9999.0
    found = {r.rule: r for r in validate_raw(spec, frames)[BAD_DAY].results}
    result = found["'usage' within [0, 500]"]
    assert result.unexpected_count == 50
    assert len(result.sample_unexpected) == SAMPLE_SIZE


def test_empty_day_and_row_count_drift_warn(spec):
    frames = _days()
    frames[BAD_DAY] = frames[BAD_DAY].iloc[0:0]
    frames[DAYS[2]] = frames[DAYS[2]].iloc[:5]
    verdicts = validate_raw(spec, frames)
    for day in (BAD_DAY, DAYS[2]):
        (failure,) = verdicts[day].failures()
        assert failure.severity == WARN and failure.rule.startswith("row count")
        assert not verdicts[day].blocking_failed


def _features(spec, frames):
    cleaned = {d: clean_day(f, d, spec) for d, f in frames.items()}
    return {d: c.features for d, c in cleaned.items()}, {
        d: c.quarantine[QUARANTINE_REASON].tolist() for d, c in cleaned.items()
    }


def test_clean_features_pass(spec):
    features, quarantine = _features(spec, _days())
    verdicts = validate_features(spec, features, quarantine)
    assert all(not v.failures() for v in verdicts.values())


@pytest.mark.parametrize(
    ("case", "rule", "severity", "count"),
    [
        ("null_label", "label is never null", ERROR, 2),
        ("label_two", "label is 0 or 1", ERROR, 2),
        ("infinite", "'usage' is finite", ERROR, 1),
        ("excluded", "no excluded column is present", ERROR, 1),
        ("quarantine", "quarantined share at most 5%", ERROR, 10),
        ("new_category", "'plan' within the champion's vocabulary", WARN, 4),
    ],
)
def test_feature_checks(spec, case, rule, severity, count):
    frames = _days()
    if case == "quarantine":  # labels outside churned's allowed values are quarantined
        frames[BAD_DAY].loc[:9, "churned"] = "MAYBE"
    if case == "new_category":
        _new_category(frames[BAD_DAY])
    features, quarantine = _features(spec, frames)
    bad = features[BAD_DAY]
    if case == "null_label":
        bad["label"] = bad["label"].astype("float64")
        bad.loc[:1, "label"] = np.nan
    if case == "label_two":
        bad.loc[:1, "label"] = 2
    if case == "infinite":
        bad.loc[0, "usage"] = np.inf
    if case == "excluded":
        bad["support_calls_after"] = 1
    vocab = {"plan": ["basic", "plus", "pro"]}
    verdicts = validate_features(spec, features, quarantine, vocabularies=vocab)
    failed = {r.rule: r for r in verdicts[BAD_DAY].failures()}
    assert rule in failed, verdicts[BAD_DAY].reasons()
    assert (failed[rule].severity, failed[rule].unexpected_count) == (severity, count)
    assert verdicts[BAD_DAY].blocking_failed == (severity == ERROR)
    assert not verdicts[DAYS[0]].failures()


def test_gx_stays_quiet_and_writes_nothing(spec, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    validate_raw(spec, _days())
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err
    assert list(tmp_path.iterdir()) == []


def _files_source(spec, tmp_path: Path, frame: pd.DataFrame, name="data.parquet"):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    frame.to_parquet(folder / name, index=False)
    return FilesSource(spec, folder)


def test_files_source_keeps_rows_without_a_usable_timestamp(spec, tmp_path):
    frame = make_churn_frame(days=2, rows_per_day=10)
    frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object)
    frame.loc[0, "event_time"] = "not a time"
    frame.loc[1, "event_time"] = None
    source = _files_source(spec, tmp_path, frame)
    days = [source.read_day(d) for d in (CHURN_START, CHURN_START + dt.timedelta(days=1))]
    unassigned = source.read_unassigned()
    assert sum(len(d) for d in days) + len(unassigned) == len(frame)
    assert sorted(unassigned["quarantine_reason"]) == [
        "timestamp: 'event_time' does not parse",
        "timestamp: 'event_time' is missing",
    ]
    assert set(unassigned["source_file"]) == {str(tmp_path / "data" / "data.parquet")}


def test_files_source_keeps_a_day_with_a_missing_column(spec, tmp_path):
    frame = make_churn_frame(days=1, rows_per_day=10).drop(columns=["plan"])
    assert len(_files_source(spec, tmp_path, frame).read_day(CHURN_START)) == 10


def test_files_source_refuses_to_merge_a_file_missing_a_column(spec, tmp_path):
    """Merged with a file that has it, the column would silently become nulls."""
    source = _files_source(spec, tmp_path, make_churn_frame(days=1, rows_per_day=10))
    lacking = make_churn_frame(days=1, rows_per_day=5, seed=1).drop(columns=["plan"])
    lacking.to_parquet(tmp_path / "data" / "lacking.parquet", index=False)
    with pytest.raises(SourceError, match=r"lacking\.parquet has no column 'plan'"):
        source.read_day(CHURN_START)


def test_corrupt_parquet_error_names_the_file(spec, tmp_path):
    source = _files_source(spec, tmp_path, make_churn_frame(days=1, rows_per_day=10))
    (tmp_path / "data" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet"):
        source.read_day(CHURN_START)


def test_cleaning_quarantines_duplicate_keys_and_unknown_labels(spec):
    frame = _days()[BAD_DAY]
    frame.loc[5, "churned"] = "MAYBE"
    result = clean_day(_duplicates(frame), BAD_DAY, spec)
    assert len(result.features) + len(result.quarantine) == 52
    assert result.quarantine_reasons == {
        "duplicate: key ['customer_id']": 2,
        "label: 'churned' is not one of the allowed values": 1,
    }
