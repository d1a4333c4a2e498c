"""Checking stored days and recording each day's verdict."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from pipeline.checks.results import ERROR, WARN, DayVerdict, Outcome
from pipeline.checks.suites import validate_raw
from pipeline.checks.verdicts import VerdictStore, check_raw_days, quarantine_reasons
from pipeline.data.cleaning import QUARANTINE_REASON
from pipeline.data.storage import PartitionStore
from pipeline.task import parse_task
from tests.helpers import CHURN_CHECKS, CHURN_START, CHURN_TASK, make_churn_frame

DAYS = [CHURN_START + dt.timedelta(days=i) for i in range(3)]
BAD_DAY = DAYS[1]


@pytest.fixture
def spec():
    return parse_task({**CHURN_TASK, **CHURN_CHECKS})


def _days(rows_per_day: int = 50) -> dict[dt.date, pd.DataFrame]:
    frame = make_churn_frame(days=len(DAYS), rows_per_day=rows_per_day)
    day = frame["event_time"].dt.date
    return {d: frame[day == d].reset_index(drop=True) for d in DAYS}


def _result(rule: str, severity: str, success: bool, count: int | None = 1) -> Outcome:
    return Outcome(rule, "computed by flywheel", "x", severity, success, 0.1, 10, count, [5])


def test_write_then_read_gives_the_verdict_with_run_id_and_time(tmp_path):
    store = VerdictStore(tmp_path / "checks")
    verdict = DayVerdict("raw_data", DAYS[0], 10, [_result("'x' ok", WARN, False)])
    path = store.write(verdict, run_id="run-7")
    assert path == tmp_path / "checks" / "raw_data" / "2025-03-01.json"
    data = store.read("raw_data", DAYS[0])
    assert data == json.loads(path.read_text())
    assert data["run_id"] == "run-7"
    assert dt.datetime.fromisoformat(data["checked_at"]).tzinfo is not None
    assert DayVerdict.from_dict(data) == verdict
    assert store.read("raw_data", DAYS[1]) is None
    assert store.read("cleaned_features", DAYS[0]) is None


def test_a_later_write_replaces_the_days_verdict(tmp_path):
    store = VerdictStore(tmp_path)
    store.write(DayVerdict("raw_data", DAYS[0], 10, [_result("a", ERROR, False)]), "r1")
    store.write(DayVerdict("raw_data", DAYS[0], 10, [_result("a", ERROR, True)]), "r2")
    assert store.left_out([DAYS[0]]) == {}
    assert store.read("raw_data", DAYS[0])["run_id"] == "r2"
    assert [p.name for p in (tmp_path / "raw_data").iterdir()] == ["2025-03-01.json"]


def test_left_out_gives_each_blocked_day_with_the_reasons_of_each_asset(tmp_path):
    store = VerdictStore(tmp_path)
    raw_fail = _result("column 'x' exists", ERROR, False, count=None)
    soft = _result("'x' within [0, 1]", WARN, False, count=3)
    feat_fail = _result("label is never null", ERROR, False, count=2)
    store.write(DayVerdict("raw_data", DAYS[0], 10, [raw_fail, soft]))
    store.write(DayVerdict("cleaned_features", DAYS[0], 10, [feat_fail]))
    store.write(DayVerdict("raw_data", DAYS[1], 10, [soft]))  # a warning only: still usable
    store.write(DayVerdict("cleaned_features", DAYS[2], 10, [feat_fail]))
    assert store.left_out(DAYS) == {
        "2025-03-01": "raw_data: column 'x' exists: failed (observed 0.1)"
        " | cleaned_features: label is never null: 2 of 10 rows (observed 0.1)",
        "2025-03-03": "cleaned_features: label is never null: 2 of 10 rows (observed 0.1)",
    }
    assert list(store.left_out(DAYS, assets=["raw_data"])) == ["2025-03-01"]
    assert store.left_out([CHURN_START - dt.timedelta(days=1)]) == {}  # never checked


def test_verdict_store_lists_days_whose_blocking_check_failed(spec, tmp_path):
    """Moved from test_suites.py, with its assertions."""
    frames = _days()
    frames[BAD_DAY] = frames[BAD_DAY].drop(columns=["region"])
    frames[DAYS[2]].loc[:2, "usage"] = 9999.0  # a warning only: the day stays usable
    store = VerdictStore(tmp_path / "checks")
    for verdict in validate_raw(spec, frames).values():
        store.write(verdict, run_id="r1")
    left_out = store.left_out(DAYS)
    assert list(left_out) == [BAD_DAY.isoformat()]
    assert "column 'region' exists" in left_out[BAD_DAY.isoformat()]
    assert store.read("raw_data", BAD_DAY)["run_id"] == "r1"


def _raw_store(tmp_path, rows_per_day: int = 20) -> PartitionStore:
    raw = PartitionStore(tmp_path / "raw_data")
    for day, frame in _days(rows_per_day).items():
        raw.write(day, frame)
    return raw


def test_check_raw_days_adds_the_unassigned_rows_as_a_warning_to_every_day(spec, tmp_path):
    raw = _raw_store(tmp_path)
    unassigned = tmp_path / "raw_data" / "unassigned.quarantine.parquet"
    rows = make_churn_frame(days=1, rows_per_day=2)
    rows["event_time"] = pd.Series(["not a time", None], dtype=object)
    rows.to_parquet(unassigned, index=False)
    verdicts = VerdictStore(tmp_path / "checks")
    found = check_raw_days(spec, raw, verdicts, DAYS[:2], run_id="r1", unassigned=unassigned)
    assert [v.day for v in found] == DAYS[:2]
    for verdict in found:
        last = verdict.results[-1]
        assert last.rule == (
            "every source row has a timestamp 'event_time' that parses"
            " (else: unassigned.quarantine.parquet)"
        )
        assert (last.severity, last.success, last.column) == (WARN, False, "event_time")
        assert (last.element_count, last.unexpected_count) == (2, 2)
        assert last.sample_unexpected == ["not a time", None]
        assert last.observed_value == str(unassigned)
        assert verdict.failures() == [last]  # the churn rows themselves are clean
        assert not verdict.blocking_failed
        stored = verdicts.read("raw_data", verdict.day)
        assert stored["run_id"] == "r1"
        assert DayVerdict.from_dict(stored).results[-1] == last
    assert verdicts.read("raw_data", DAYS[2]) is None  # not in the run


def test_check_raw_days_without_unassigned_rows(spec, tmp_path):
    raw = _raw_store(tmp_path)
    verdicts = VerdictStore(tmp_path / "checks")
    absent = tmp_path / "nothing.parquet"
    (plain,) = check_raw_days(spec, raw, verdicts, [DAYS[0]], unassigned=absent)
    assert plain.failures() == []
    assert not any(r.rule.startswith("every source row") for r in plain.results)
    empty = tmp_path / "empty.parquet"
    make_churn_frame(days=1, rows_per_day=1).iloc[0:0].to_parquet(empty, index=False)
    (with_empty,) = check_raw_days(spec, raw, verdicts, [DAYS[0]], unassigned=empty)
    assert with_empty.results[-1].success is True
    assert with_empty.results[-1].element_count == 0


def test_check_raw_days_reads_only_the_suites_columns_and_names_a_missing_one(spec, tmp_path):
    raw = _raw_store(tmp_path)
    frame = raw.read(DAYS[1]).drop(columns=["plan"])
    frame["extra"] = 1
    raw.write(DAYS[1], frame)
    found = check_raw_days(spec, raw, VerdictStore(tmp_path / "checks"), DAYS)
    assert [v.blocking_failed for v in found] == [False, True, False]
    assert found[1].reasons(ERROR) == ["column 'plan' exists: 20 of 20 rows (observed missing)"]


def test_quarantine_reasons(tmp_path):
    with_reason = tmp_path / "q.parquet"
    pd.DataFrame({"a": [1, 2], QUARANTINE_REASON: ["bad a", "bad b"]}).to_parquet(with_reason)
    assert quarantine_reasons(with_reason) == ["bad a", "bad b"]
    without = tmp_path / "old.parquet"
    pd.DataFrame({"a": [1, 2, 3]}).to_parquet(without)
    assert quarantine_reasons(without) == ["(no reason recorded)"] * 3
    assert quarantine_reasons(tmp_path / "absent.parquet") == []
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({QUARANTINE_REASON: pd.Series([], dtype=object)}).to_parquet(empty)
    assert quarantine_reasons(empty) == []
