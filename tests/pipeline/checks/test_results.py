"""What a check finds: Outcome, DayVerdict, and JSON-safe values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.checks.results import ERROR, WARN, DayVerdict, Outcome, outcome, plain

DAY = dt.date(2025, 3, 1)


def _outcome(rule: str, severity: str, success: bool, count: int | None = 2, **kw) -> Outcome:
    return Outcome(
        rule=rule,
        expectation="expect_column_values_to_be_between",
        column="x",
        severity=severity,
        success=success,
        observed_value=kw.pop("observed_value", 0.2),
        element_count=10,
        unexpected_count=count,
        sample_unexpected=kw.pop("sample_unexpected", [99.0, 98.0]),
    )


def _verdict(*results: Outcome) -> DayVerdict:
    return DayVerdict("raw_data", DAY, 10, list(results))


BLOCK = _outcome("'x' exists", ERROR, False, count=None, observed_value="missing")
SOFT = _outcome("'x' within [0, 10]", WARN, False)
OK_ERROR = _outcome("'y' exists", ERROR, True, count=None)
OK_WARN = _outcome("'y' within [0, 1]", WARN, True, count=0)


def test_failures_by_severity():
    verdict = _verdict(OK_ERROR, BLOCK, SOFT, OK_WARN)
    assert verdict.failures() == [BLOCK, SOFT]
    assert verdict.failures(ERROR) == [BLOCK]
    assert verdict.failures(WARN) == [SOFT]
    assert verdict.passed(ERROR) is False
    assert _verdict(OK_ERROR, SOFT).passed(ERROR) is True


@pytest.mark.parametrize(
    ("results", "blocking", "worst"),
    [
        ([OK_ERROR, OK_WARN], False, None),
        ([], False, None),
        ([OK_ERROR, SOFT], False, WARN),
        ([BLOCK, OK_WARN], True, ERROR),
        ([SOFT, BLOCK], True, ERROR),
    ],
)
def test_blocking_failed_and_worst_failed(results, blocking, worst):
    verdict = _verdict(*results)
    assert verdict.blocking_failed is blocking
    assert verdict.worst_failed == worst


def test_reasons_name_the_rule_the_count_and_the_observed_value():
    verdict = _verdict(OK_ERROR, BLOCK, SOFT)
    assert verdict.reasons() == [
        "'x' exists: failed (observed missing)",
        "'x' within [0, 10]: 2 of 10 rows (observed 0.2)",
    ]
    assert verdict.reasons(WARN) == ["'x' within [0, 10]: 2 of 10 rows (observed 0.2)"]
    assert _verdict(OK_ERROR).reasons() == []


def test_to_dict_is_json_and_from_dict_gives_the_verdict_back():
    verdict = _verdict(BLOCK, SOFT, OK_WARN)
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["day"] == "2025-03-01"
    assert data["blocking_failed"] is True
    assert data["results"][1] == {
        "rule": "'x' within [0, 10]",
        "expectation": "expect_column_values_to_be_between",
        "column": "x",
        "severity": WARN,
        "success": False,
        "observed_value": 0.2,
        "element_count": 10,
        "unexpected_count": 2,
        "sample_unexpected": [99.0, 98.0],
    }
    back = DayVerdict.from_dict(data)
    assert back == verdict
    assert back.day == DAY and isinstance(back.day, dt.date)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (3, 3),
        ("a", "a"),
        (True, True),
        (np.int64(7), 7),
        (np.float32(0.5), 0.5),
        (np.bool_(True), True),
        (np.str_("b"), "b"),
        (1.25, 1.25),
        (float("nan"), None),
        (np.float64("nan"), None),
        (float("inf"), "inf"),
        (-np.inf, "-inf"),
        (pd.NaT, None),
        (pd.Timestamp("2025-03-01 12:30", tz="UTC"), "2025-03-01T12:30:00+00:00"),
        (dt.date(2025, 3, 1), "2025-03-01"),
        (dt.datetime(2025, 3, 1, 8, 0), "2025-03-01T08:00:00"),
        (pd.NA, None),
        (np.datetime64("NaT"), None),
        ({1: np.int64(2), "k": [np.nan]}, {"1": 2, "k": [None]}),
        ((np.int8(1), "x"), [1, "x"]),
        (b"raw", "b'raw'"),
    ],
)
def test_plain(value, expected):
    found = plain(value)
    assert found == expected
    assert type(found) is type(expected)
    json.dumps(found, allow_nan=False)  # JSON-safe: no NaN nor inf


def test_plain_keeps_finite_floats_exact():
    assert plain(np.float64(0.1)) == 0.1
    assert not math.isnan(plain(np.float64(1e308)))


def test_outcome_computed_here_takes_rule_column_severity_and_makes_values_plain():
    found = outcome(
        None,
        rule="row count",
        severity=WARN,
        success=np.bool_(False),
        observed_value={"rows": np.int64(3), "trailing_median": np.nan},
        element_count=np.int64(3),
        unexpected_count=None,
        sample_unexpected=[np.float64(np.inf)],
    )
    assert found == Outcome(
        rule="row count",
        expectation="computed by flywheel",
        column=None,
        severity=WARN,
        success=False,
        observed_value={"rows": 3, "trailing_median": None},
        element_count=3,
        unexpected_count=None,
        sample_unexpected=["inf"],
    )


def test_an_outcome_dict_names_every_field():
    result = Outcome("rule", "expect_x", "col", WARN, False, {"a": [1]}, 10, 2, ["v"])
    assert list(result.to_dict()) == [f.name for f in dataclasses.fields(Outcome)]
    assert Outcome(**result.to_dict()) == result
