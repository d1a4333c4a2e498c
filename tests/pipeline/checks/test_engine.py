"""The Great Expectations engine: one validation for many days, answered per day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.checks import engine
from pipeline.checks.engine import DAY_COLUMN, Rule, _kinds, is_numeric, names, validate_days
from pipeline.checks.results import ERROR, SAMPLE_SIZE, WARN

D1, D2, D3 = (dt.date(2025, 3, 1) + dt.timedelta(days=i) for i in range(3))


def _ex():
    return engine.import_gx().expectations


def _between(max_fraction: float = 0.0, samples_from: tuple[str, ...] = ()) -> Rule:
    bounds = _ex().ExpectColumnValuesToBeBetween(column="x", min_value=0, max_value=10)
    return Rule("'x' within [0, 10]", WARN, bounds, "x", max_fraction, samples_from)


@pytest.fixture
def gx_calls(monkeypatch):
    """The length of the frame of each Great Expectations validation."""
    calls = []
    real = engine.run_suite
    monkeypatch.setattr(engine, "run_suite", lambda f, r: calls.append(len(f)) or real(f, r))
    return calls


def test_one_call_answers_each_day_with_its_own_count(gx_calls):
    frames = {
        D1: pd.DataFrame({"x": [1.0, 20.0, 30.0]}),
        D2: pd.DataFrame({"x": [5.0, 6.0]}),
        D3: pd.DataFrame({"x": [-1.0, 2.0, 3.0, 4.0]}),
    }
    out = validate_days(frames, ["x"], lambda frame: [_between()])
    assert gx_calls == [9]
    (d1,), (d2,), (d3,) = out[D1], out[D2], out[D3]
    assert (d1.success, d1.unexpected_count, d1.element_count) == (False, 2, 3)
    assert d1.observed_value == 0.6667  # round(2 / 3, 4)
    assert d1.sample_unexpected == [20.0, 30.0]
    assert (d2.success, d2.unexpected_count, d2.observed_value) == (True, 0, 0.0)
    assert d2.sample_unexpected == []
    assert (d3.success, d3.unexpected_count, d3.observed_value) == (False, 1, 0.25)
    assert d3.sample_unexpected == [-1.0]
    assert (d1.rule, d1.severity, d1.column) == ("'x' within [0, 10]", WARN, "x")
    assert d1.expectation == "expect_column_values_to_be_between"


@pytest.mark.parametrize(("max_fraction", "success"), [(0.0, False), (0.5, False), (0.7, True)])
def test_max_fraction_sets_when_a_day_fails(max_fraction, success):
    frames = {D1: pd.DataFrame({"x": [1.0, 20.0, 30.0]})}  # 2 of 3 rows unexpected
    (found,) = validate_days(frames, ["x"], lambda frame: [_between(max_fraction)])[D1]
    assert (found.success, found.unexpected_count) == (success, 2)


def test_samples_are_capped_and_may_come_from_several_columns():
    frames = {
        D1: pd.DataFrame({"id": range(30), "x": [99.0] * 30}),
        D2: pd.DataFrame({"id": [100, 101], "x": [1.0, 50.0]}),
    }
    rules = lambda frame: [_between(samples_from=("id", "x"))]  # noqa: E731
    out = validate_days(frames, ["id", "x"], rules)
    (d1,), (d2,) = out[D1], out[D2]
    assert d1.unexpected_count == 30
    assert len(d1.sample_unexpected) == SAMPLE_SIZE
    assert d1.sample_unexpected[0] == {"id": 0, "x": 99.0}
    assert d2.sample_unexpected == [{"id": 101, "x": 50.0}]


def test_empty_days_get_no_outcomes_and_no_rows_in_the_call(gx_calls):
    frames = {D1: pd.DataFrame({"x": [1.0]}), D2: pd.DataFrame({"x": pd.Series([], dtype=float)})}
    out = validate_days(frames, ["x"], lambda frame: [_between()])
    assert gx_calls == [1]
    assert out[D2] == []
    assert [o.success for o in out[D1]] == [True]


def test_no_days_with_rows_means_no_call(gx_calls):
    out = validate_days({D1: pd.DataFrame({"x": []})}, ["x"], lambda frame: [_between()])
    assert out == {D1: []}
    assert gx_calls == []


def test_a_day_of_another_schema_gets_its_own_call(gx_calls):
    frames = {
        D1: pd.DataFrame({"x": [1.0, 2.0]}),
        D2: pd.DataFrame({"x": [3.0, 40.0]}),
        D3: pd.DataFrame({"y": [1.0, 2.0, 3.0]}),  # no column x
    }
    exists = Rule("column 'x' exists", ERROR, _ex().ExpectColumnToExist(column="x"), "x")
    out = validate_days(frames, ["x"], lambda frame: [exists])
    assert sorted(gx_calls) == [3, 4]
    assert [o.success for o in out[D1] + out[D2]] == [True, True]
    assert out[D1][0].observed_value == "present"
    (missing,) = out[D3]
    assert (missing.success, missing.observed_value) == (False, "missing")
    assert (missing.unexpected_count, missing.element_count) == (3, 3)  # every row is unusable


def test_an_all_null_day_joins_the_numeric_days(gx_calls):
    frames = {
        D1: pd.DataFrame({"x": [1.0, 50.0]}),
        D2: pd.DataFrame({"x": pd.Series([None, None], dtype=object)}),
    }
    out = validate_days(frames, ["x"], lambda frame: [_between()])
    assert gx_calls == [4]
    assert out[D1][0].unexpected_count == 1
    assert (out[D2][0].success, out[D2][0].unexpected_count) == (True, 0)  # nulls are not checked


def test_arrow_tables_are_validated_like_frames(gx_calls):
    frames = {
        D1: pa.table({"x": [1.0, 20.0], "other": ["a", "b"]}),
        D2: pa.table({"x": [3.0, 4.0, 5.0], "other": ["c", "d", "e"]}),
    }
    seen = []

    def rules(frame):
        seen.append(list(frame.columns))
        return [_between()]

    out = validate_days(frames, ["x"], rules)
    assert gx_calls == [5]
    assert seen == [["x", DAY_COLUMN]]  # only the suite's columns, and the day
    assert [out[D1][0].unexpected_count, out[D2][0].unexpected_count] == [1, 0]
    assert out[D1][0].sample_unexpected == [20.0]


def test_the_validated_frame_carries_each_rows_day_and_prepare_runs_first():
    frames = {D1: pd.DataFrame({"x": [1.0]}), D2: pd.DataFrame({"x": [2.0, 3.0]})}
    seen = {}

    def prepare(frame):
        frame["doubled"] = frame["x"] * 2

    def rules(frame):
        seen["days"] = frame[DAY_COLUMN].tolist()
        seen["doubled"] = frame["doubled"].tolist()
        return []

    assert validate_days(frames, ["x"], rules, prepare) == {D1: [], D2: []}
    utc = [pd.Timestamp(D1, tz="UTC"), pd.Timestamp(D2, tz="UTC"), pd.Timestamp(D2, tz="UTC")]
    assert seen == {"days": utc, "doubled": [2.0, 4.0, 6.0]}


def test_a_table_level_expectation_answers_all_days_of_the_call_alike():
    frames = {D1: pd.DataFrame({"x": [1.0, 2.0, 3.0]}), D2: pd.DataFrame({"x": [4.0, 5.0]})}
    count = _ex().ExpectTableRowCountToBeBetween(min_value=4, max_value=100)
    rule = Rule("at least 4 rows", WARN, count)
    out = validate_days(frames, ["x"], lambda frame: [rule])
    for day, rows in ((D1, 3), (D2, 2)):
        (found,) = out[day]
        # the whole call's rows are counted: 5 passes, though neither day has 4
        assert (found.success, found.observed_value) == (True, 5)
        assert (found.element_count, found.unexpected_count) == (rows, None)


def test_columns_to_match_set_reports_the_mismatch():
    frames = {D1: pd.DataFrame({"x": [1.0], "y": [2.0]})}
    match = _ex().ExpectTableColumnsToMatchSet(column_set=["x", "z"], exact_match=False)
    (found,) = validate_days(frames, ["x", "y"], lambda f: [Rule("cols", ERROR, match)])[D1]
    assert found.success is False
    assert found.unexpected_count is None  # a table-level answer, not a count of rows
    assert "z" in str(found.sample_unexpected)


def test_names_of_a_frame_and_a_table():
    assert names(pd.DataFrame({"a": [1], "b": [2]})) == ["a", "b"]
    assert names(pa.table({"b": [1], "a": [2]})) == ["b", "a"]


def test_kinds_of_frame_columns():
    frame = pd.DataFrame(
        {
            "i": [1, 2],
            "f": [1.5, np.nan],
            "s": ["a", "b"],
            "b": [True, False],
            "nulls": pd.Series([None, None], dtype=object),
        }
    )
    kinds = _kinds(frame, ["i", "f", "s", "b", "nulls", "gone"])
    assert kinds == ("numeric", "numeric", "other", "other", "numeric", "missing")


def test_kinds_of_table_columns():
    table = pa.table(
        {
            "i": pa.array([1, 2], pa.int32()),
            "f": pa.array([1.0, 2.0]),
            "d": pa.array([Decimal("1.5"), Decimal("2.5")]),
            "s": pa.array(["a", "b"]),
            "nulls": pa.array([None, None], pa.null()),
            "t": pa.array([True, False]),
        }
    )
    kinds = _kinds(table, ["i", "f", "d", "s", "nulls", "t", "gone"])
    assert kinds == ("numeric", "numeric", "numeric", "other", "numeric", "other", "missing")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2], True),
        ([1.0, np.nan], True),
        (pd.array([1, None], dtype="Int64"), True),
        ([True, False], False),
        (["1", "2"], False),
        (pd.to_datetime(["2025-03-01"] * 2), False),
    ],
)
def test_is_numeric(values, expected):
    assert is_numeric(pd.DataFrame({"c": values}), "c") is expected


def test_each_rule_reads_only_the_columns_it_names():
    ex = _ex()
    rule = lambda e: Rule("r", WARN, e)  # noqa: E731
    assert engine.rule_columns(_between()) == ("x",)
    pair = ex.ExpectColumnPairValuesToBeEqual(column_A="x", column_B=DAY_COLUMN)
    assert engine.rule_columns(rule(pair)) == ("x", DAY_COLUMN)
    unique = ex.ExpectCompoundColumnsToBeUnique(column_list=["x", "y"])
    assert engine.rule_columns(rule(unique)) == ("x", "y")
    assert engine.rule_columns(rule(ex.ExpectColumnToExist(column="z"))) == engine.NAMES
    count = ex.ExpectTableRowCountToBeBetween(min_value=1, max_value=10)
    assert engine.rule_columns(rule(count)) == engine.WHOLE


def test_rules_of_different_columns_answer_in_their_order():
    ex = _ex()
    frames = {D1: pd.DataFrame({"x": [1.0, 20.0], "y": ["a", "a"]}),
              D2: pd.DataFrame({"x": [2.0, 3.0], "y": ["a", "b"]})}  # fmt: skip
    rules = [
        Rule("y exists", ERROR, ex.ExpectColumnToExist(column="y"), "y"),
        _between(),
        Rule("y unique", WARN, ex.ExpectCompoundColumnsToBeUnique(column_list=["y", DAY_COLUMN]),
             "y"),
        Rule("z exists", ERROR, ex.ExpectColumnToExist(column="z"), "z"),
        Rule("y in set", WARN, ex.ExpectColumnValuesToBeInSet(column="y", value_set=["a"]), "y"),
    ]  # fmt: skip
    out = validate_days(frames, ["x", "y"], lambda frame: rules)
    assert [o.rule for o in out[D1]] == [r.name for r in rules]
    assert [o.success for o in out[D1]] == [True, False, False, False, True]
    assert [o.success for o in out[D2]] == [True, True, True, False, False]
    assert out[D1][1].sample_unexpected == [20.0] and out[D2][4].sample_unexpected == ["b"]
