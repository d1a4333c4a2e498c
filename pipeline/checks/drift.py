"""Feature drift: the population stability index (PSI) of each day against the champion's
training distribution, for all of a run's days at once.

The champion's :class:`~pipeline.model.features.Preprocessor` keeps, from its training rows, each
numeric feature's deciles (9 cut points) with the share of rows in each of the 10 bins they make
plus the share of missing values, and each categorical feature's share of every vocabulary value
plus the out-of-vocabulary share (unseen, rare or missing values, as the model codes them). A
day's shares in the same bins give its PSI per feature::

    PSI = sum over bins of (day - training) * ln(day / training)

with both shares raised to at least :data:`PSI_EPSILON` (1e-4) so that an empty bin counts as
1 in 10,000 rows rather than making the logarithm infinite; a bin empty on both sides adds 0.

Many features are constant within a day or nearly so (the weather of an airport's hour, a
lagged rate per key): one day of them is a handful of points, whose PSI against the training
distribution is large on every real day (2013 flights: 1 to 9 for temperature, pressure, wind
and the lagged rates, every day), so per-day PSI cannot tell their drift from their weather.
The champion keeps, per feature, the largest PSI one of its own training days showed against all
of training (``typical_day_psi``). A feature *that varies within a day* (that largest PSI at most
:data:`PSI_WARN`: carrier, airports, hours, distance, 0.01-0.10) drifts when the day's PSI is
more than :data:`PSI_WARN` (0.2) above it; the day-level ones are shown (PSI, ``max_psi``) but
never warned on, nor are the weekday and month (one value a day by construction; skipped). On
2013 with a champion trained on January: no warning in the 30 days after its training window;
from the DST change (2013-03-10) to 2013-11-03, ``calendar_hour`` (an hour of the UTC
timestamp) warns, moved by an hour against the winter training rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.model.features import Preprocessor

PSI_EPSILON = 1e-4  # the least share of a bin, on both sides (an empty bin: 1 row in 10,000)
PSI_WARN = 0.2  # PSI above this (beyond the champion's own training days') is drift: WARN
TOP_FEATURES = 5  # drifting features named in a day's observed value
MIN_DAY_ROWS = 100  # training days with fewer rows do not set ``typical_day_psi``


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPSILON) -> np.ndarray:
    """PSI of ``actual`` shares against ``expected`` ones, over the last axis (bins)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return np.sum((a - e) * np.log(a / e), axis=-1)


def decile_bins(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Each value's bin over the cut points: right-closed (``cuts[k-1] < x <= cuts[k]`` is bin
    k), 0..len(cuts), and ``len(cuts) + 1`` for a missing (non-finite) value. The bins that
    :meth:`Preprocessor.fit` counts its training shares in."""
    values = np.asarray(values, dtype=np.float64)
    bins = np.searchsorted(np.asarray(cuts, dtype=np.float64), values, side="left")
    bins[~np.isfinite(values)] = len(cuts) + 1
    return bins


def _numbers(values: pd.Series) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values):
        values = pd.to_numeric(values.astype(object), errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def feature_bins(prep: Preprocessor, frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, list]]:
    """Each feature with a stored training distribution: its rows' bins and the training
    shares of the bins."""
    out = {}
    for col in prep.categorical:
        shares = prep.category_shares.get(col)
        if shares is None or col not in frame.columns:
            continue
        vocab = pd.Index(prep.vocabularies[col])  # coded as Preprocessor.transform codes it
        values = frame[col].astype(object).where(frame[col].notna(), None)
        out[col] = (vocab.get_indexer(values) + 1, shares)
    for col in prep.numeric:
        shares = prep.decile_shares.get(col)
        if shares is None or col not in frame.columns:
            continue
        out[col] = (decile_bins(_numbers(frame[col]), prep.deciles[col]), shares)
    return out


def day_psi(
    prep: Preprocessor, frame: pd.DataFrame, codes: np.ndarray, n_days: int
) -> dict[str, np.ndarray]:
    """Each feature's PSI on each day (``codes``: each row's day, 0..n_days-1): one bincount
    per feature over all the rows. A day without rows gets NaN."""
    rows = np.bincount(codes, minlength=n_days).astype(np.float64)
    out = {}
    for col, (bins, shares) in feature_bins(prep, frame).items():
        k = len(shares)
        counts = np.bincount(codes * k + bins, minlength=n_days * k).reshape(n_days, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = psi(np.asarray(shares), counts / rows[:, None])
        out[col] = np.where(rows > 0, value, np.nan)
    return out


def typical_day_psi(prep: Preprocessor, frame: pd.DataFrame) -> dict[str, float]:
    """The largest PSI of one training day against the whole training distribution, per
    feature (the days of at least :data:`MIN_DAY_ROWS` rows, or all where none has as many);
    empty when the rows have no one timestamp column to tell their days by."""
    stamps = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    stamps = stamps or [c for c in frame.columns if pd.api.types.is_datetime64_dtype(frame[c])]
    if len(stamps) != 1:
        return {}
    day = frame[stamps[0]].dt.floor("D")
    if day.isna().any():
        return {}
    codes, _ = pd.factorize(day)
    codes = codes.astype(np.int64)
    n_days = int(codes.max()) + 1 if len(codes) else 0
    rows = np.bincount(codes, minlength=n_days)
    use = rows >= MIN_DAY_ROWS if (rows >= MIN_DAY_ROWS).any() else rows > 0
    return {col: float(np.max(v[use])) for col, v in day_psi(prep, frame, codes, n_days).items()}
