"""The label rule applied to raw rows: 0, 1, or unusable with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data.labels import compute_labels
from pipeline.task import parse_task


def _spec(label: dict, **keys):
    return parse_task(
        {
            "name": "t",
            "source": {"kind": "files", "path": "data"},
            "timestamp": "ts",
            "label": {"column": "y", **label},
            "features": {"numeric": ["x"]},
            **keys,
        }
    )


def _labels(spec, values):
    label, reason = compute_labels(pd.DataFrame({"y": values}), spec)
    return [None if np.isnan(v) else v for v in label], reason.tolist()


def test_positive_values_any_other_value_is_a_negative():
    spec = _spec({"positive_values": ["YES", 1]})
    labels, reasons = _labels(spec, pd.Series(["YES", "NO", "1", "maybe", None], dtype=object))
    assert labels == [1.0, 0.0, 1.0, 0.0, None]  # 1 matches "1": values compare as text
    assert reasons == ["", "", "", "", "label: 'y' is missing"]


def test_allowed_values_make_other_values_unusable():
    spec = _spec({"positive_values": ["YES"]}, checks={"y": {"allowed": ["YES", "NO"]}})
    labels, reasons = _labels(spec, pd.Series(["YES", "NO", "maybe", None], dtype=object))
    assert labels == [1.0, 0.0, None, None]
    assert reasons == [
        "",
        "",
        "label: 'y' is not one of the allowed values",
        "label: 'y' is missing",
    ]


def test_greater_than():
    spec = _spec({"greater_than": 15})
    values = pd.Series([16, 15, -3.5, "20", "late", None], dtype=object)
    labels, reasons = _labels(spec, values)
    assert labels == [1.0, 0.0, 0.0, 1.0, None, None]
    assert reasons == ["", "", "", "", "label: 'y' is not a number", "label: 'y' is missing"]


@pytest.mark.parametrize(
    ("label", "values"),
    [
        ({"greater_than": 0, "missing_is_positive": True}, [5.0, None, -1.0]),
        ({"positive_values": ["a"], "missing_is_positive": True}, ["a", None, "b"]),
    ],
)
def test_missing_is_positive(label, values):
    labels, reasons = _labels(_spec(label), pd.Series(values, dtype=object))
    assert labels == [1.0, 1.0, 0.0]
    assert reasons == ["", "", ""]


def test_the_result_keeps_the_frames_index():
    spec = _spec({"greater_than": 0})
    frame = pd.DataFrame({"y": [1.0, -1.0]}, index=[10, 20])
    label, reason = compute_labels(frame, spec)
    assert list(label.index) == [10, 20] and list(reason.index) == [10, 20]
    assert label.dtype == "float64"
