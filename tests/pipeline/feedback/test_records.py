"""One piece of feedback: what it must be, field by field."""

from pathlib import Path

import pandas as pd
import pytest

from pipeline.feedback.records import (
    MAX_SOURCE_LENGTH,
    FeedbackError,
    FeedbackFileError,
    read_feedback_file,
    validate_feedback,
)


@pytest.mark.parametrize(
    ("item", "want"),
    [
        ({"prediction_id": "abc", "label": 1}, ("abc", 1, "api")),
        ({"prediction_id": "abc", "label": 0.0, "source": "crm"}, ("abc", 0, "crm")),
        ({"prediction_id": "abc", "label": 1, "source": None}, ("abc", 1, "api")),
    ],
)
def test_valid_feedback(item, want):
    assert validate_feedback(item) == want


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ([], "body"),
        ({"label": 1}, "prediction_id"),
        ({"prediction_id": "", "label": 1}, "prediction_id"),
        ({"prediction_id": "x" * 33, "label": 1}, "prediction_id"),
        ({"prediction_id": "abc", "label": 2}, "label"),
        ({"prediction_id": "abc", "label": True}, "label"),
        ({"prediction_id": "abc", "label": "yes"}, "label"),
        ({"prediction_id": "abc", "label": 1, "source": "s" * (MAX_SOURCE_LENGTH + 1)}, "source"),
    ],
)
def test_invalid_feedback_names_the_field(item, field):
    with pytest.raises(FeedbackError) as err:
        validate_feedback(item)
    assert err.value.field == field


def test_read_feedback_file(tmp_path: Path):
    csv = tmp_path / "f.csv"
    pd.DataFrame({"prediction_id": ["007"], "label": [1], "source": ["crm"]}).to_csv(
        csv, index=False
    )
    assert read_feedback_file(csv)["prediction_id"].tolist() == ["007"]  # kept as text
    with pytest.raises(FeedbackFileError, match=r"f\.json is neither \.csv nor \.parquet"):
        read_feedback_file(tmp_path / "f.json")
