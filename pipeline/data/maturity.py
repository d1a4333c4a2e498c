"""When a batch label may be used: ``label_delay_days`` after its day, on the run's clock.

Every row of day D gets its batch label on the same day, ``D + label_delay_days``; until then the
row is kept unlabelled (its ``label`` is NaN). A task without a delay labels every day at once.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pipeline.task import LABEL_COLUMN


def matures_on(day: dt.date, delay_days: int) -> dt.date:
    """The first clock date on which the batch labels of ``day`` may be used."""
    return day + dt.timedelta(days=delay_days)


def label_matured(day: dt.date, as_of: dt.date, delay_days: int) -> bool:
    """Whether the batch labels of ``day`` may be used on ``as_of`` (the run's clock)."""
    return as_of >= matures_on(day, delay_days)


def run_clock(as_of: str, now: dt.datetime) -> dt.date:
    """The run's clock: ``as_of`` (YYYY-MM-DD, from run config) or the UTC date of ``now``."""
    if not as_of:
        return now.astimezone(dt.UTC).date()
    try:
        return dt.date.fromisoformat(as_of)
    except ValueError as err:
        raise ValueError(f"run config 'as_of' is {as_of!r}: expected YYYY-MM-DD") from err


def labelled_mask(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose label is known (0 or 1); unlabelled rows hold NaN."""
    if LABEL_COLUMN not in frame.columns or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    return frame[LABEL_COLUMN].notna().to_numpy()
