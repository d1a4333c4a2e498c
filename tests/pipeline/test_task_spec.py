"""What a task spec holds: its derived columns, the days its lagged rates read, and its writer."""

import datetime as dt

import pytest

from pipeline.task import load_task, parse_task
from pipeline.task_spec import LaggedRate, TaskSpec
from tests.helpers import CHURN_TASK


def test_raw_and_input_columns_come_from_the_spec_alone():
    spec = parse_task(CHURN_TASK)
    assert spec.label.column in spec.raw_columns
    assert spec.label.column not in spec.input_columns
    assert set(spec.input_columns) == set(spec.raw_columns) - {spec.label.column}
    assert LaggedRate(("region",), 3).feature_name == "rate_region_3d"


@pytest.mark.parametrize("delay", [0, 30])
def test_history_days_end_label_delay_days_before_the_day(delay: int):
    spec = parse_task({**CHURN_TASK, "label_delay_days": delay})  # one 3-day lagged rate
    day = dt.date(2025, 3, 10)
    days = spec.history_days(day)
    assert spec.lag_reach_days == 3 + delay
    assert days == [day - dt.timedelta(days=k) for k in (3 + delay, 2 + delay, 1 + delay)]
    assert all((day - d).days > delay for d in days)  # only days whose labels have matured


def test_a_spec_without_lagged_rates_reads_no_history():
    spec = parse_task({**CHURN_TASK, "features": {**CHURN_TASK["features"], "lagged_rates": []}})
    assert spec.lag_reach_days == 0 and spec.history_days(dt.date(2025, 3, 10)) == []


def test_to_mapping_is_read_back_equal_checks_key_and_slices_included():
    spec = load_task()
    assert spec.checks and spec.key and spec.slices  # the parts a lossy writer once dropped
    again = parse_task(spec.to_mapping())
    assert isinstance(again, TaskSpec) and again == spec
    assert again.checks == spec.checks and again.key == spec.key
