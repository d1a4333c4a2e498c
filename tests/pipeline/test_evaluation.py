"""The evaluation step's parts that need no model (the whole step: test_gate, test_labelled)."""

from __future__ import annotations

import pandas as pd

from pipeline.evaluation import by_source
from pipeline.labelled import LABEL_SOURCE


def test_holdout_rows_are_counted_by_where_their_label_came_from():
    frame = pd.DataFrame({LABEL_SOURCE: ["batch", "feedback", "batch"]})
    assert by_source(frame) == {"batch": 2, "feedback": 1}
    assert by_source(pd.DataFrame({"x": [1, 2]})) == {"batch": 2, "feedback": 0}  # before sources
