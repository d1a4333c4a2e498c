"""When a batch label may be used, and the run's clock."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipeline.data.maturity import label_matured, labelled_mask, matures_on, run_clock

DAY = dt.date(2025, 3, 1)


def test_a_label_matures_delay_days_after_its_day():
    assert matures_on(DAY, 30) == dt.date(2025, 3, 31)
    assert matures_on(DAY, 0) == DAY
    assert not label_matured(DAY, dt.date(2025, 3, 30), 30)  # one day short
    assert label_matured(DAY, dt.date(2025, 3, 31), 30)  # on the day
    assert label_matured(DAY, DAY, 0)


def test_the_run_clock_is_as_of_or_the_utc_date_of_now():
    late_evening = dt.datetime(2025, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert run_clock("", late_evening) == dt.date(2025, 3, 2)  # already the 2nd in UTC
    assert run_clock("2024-12-31", late_evening) == dt.date(2024, 12, 31)
    with pytest.raises(ValueError, match="'as_of' is '31/12/2024': expected YYYY-MM-DD"):
        run_clock("31/12/2024", late_evening)


def test_labelled_rows_are_those_with_a_label():
    frame = pd.DataFrame({"label": [1.0, np.nan, 0.0]})
    assert labelled_mask(frame).tolist() == [True, False, True]
    assert labelled_mask(pd.DataFrame({"x": [1]})).tolist() == [False]
    assert labelled_mask(pd.DataFrame({"label": []})).tolist() == []
