"""Label shift and feature drift on cleaned_features: computed outcomes, for a run's days at once.

Real days vary far more than a binomial model says: in the 2013 flights the daily delay rate
runs from 3.9% (2013-10-02) to 80% (2013-03-08, a snowstorm), median 21%, so no rate test can
block without blocking real data, and an inverted label on a typical day (79%) looks like a
storm. So only what cannot be real fails at ERROR:

* a day of at least :data:`MIN_LABELLED_ROWS` labelled rows that holds one class alone while its
  trailing :data:`TRAILING_LABEL_DAYS` days held both (2013: every day held both classes, at
  least 30 delayed of 596 rows, 2013-11-29, and at least 171 on time, 2013-02-09);
* a day on which the champion ranks the labels far below chance: ROC-AUC under
  :data:`MIN_CHAMPION_AUC`, and under 0.5 by more than 3 standard errors of a chance AUC on the
  day's class counts (Hanley-McNeil), with at least :data:`MIN_LABELLED_ROWS` rows. Measured on
  the 365 days of 2013 with four champion-like models (trained on 30 or 60 real days ending in
  Feb, Mar, Jul or Oct; 1,460 day scores): daily AUC median 0.64-0.66, 5th percentile
  0.52-0.55, lowest 0.441. A day of ~950 rows at a 21% rate has a chance-AUC standard error of
  about 0.02, so 0.35 is ~5 standard errors under 0.5 and ~0.09 under the lowest real day. An
  inverted day scores 1 - AUC: it fails when the champion ranks that day better than 0.65,
  which those four did on 44-55% of 2013 days (the tests' 5-epoch champion: 36%). A weaker
  champion catches fewer inverted days; the rule never blocks a real one, which is the point.

WARN when the day's label rate lies more than :data:`RATE_MARGIN` (0.10) outside the range of
the trailing days' daily rates (at least :data:`MIN_TRAILING_DAYS` of them): in 2013 the day's
rate exceeded the trailing 28 days' range by at most 0.22 (2013-01-16) and by more than 0.10 on
7 days (01-16, 02-08, 02-09 (a blizzard), 09-12, 11-27, 12-05, 12-09), days a person should
look at. A day without enough history, or without a
champion, passes that part and says so in its observed value.

Feature drift (:mod:`pipeline.checks.drift`) is a WARN too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.checks.drift import PSI_WARN, TOP_FEATURES, day_psi
from pipeline.checks.results import ERROR, WARN, Outcome, outcome
from pipeline.task import LABEL_COLUMN, TaskSpec

if TYPE_CHECKING:
    from pipeline.checks.engine import Frame
    from pipeline.model.features import Preprocessor
    from pipeline.model.registry import ModelRegistry

TRAILING_LABEL_DAYS = 28
MIN_TRAILING_DAYS = 7  # the rate's range needs this many trailing days with labels
RATE_MARGIN = 0.10  # WARN: the day's rate outside [min - 0.10, max + 0.10] of trailing rates
MIN_LABELLED_ROWS = 100
MIN_CHAMPION_AUC = 0.35
AUC_STANDARD_ERRORS = 3.0

ONE_CLASS_RULE = "label holds both classes when the trailing 28 days did"
AUC_RULE = f"the champion ranks the labels no worse than AUC {MIN_CHAMPION_AUC:g}"
RATE_RULE = f"label rate within {RATE_MARGIN:g} of the trailing 28 days' range of daily rates"
DRIFT_RULE = (
    f"features that vary within a day stay within PSI {PSI_WARN:g} of the champion's training"
    " distribution (beyond its training days' own)"
)

# Calendar features one value a day by construction: a day's share of them is the calendar, not
# the data (a month after the training window is out of its vocabulary on every day of it).
DAY_CALENDAR = ("day_of_week", "month")

LabelCounts = tuple[int, int]  # (labelled rows, positives) of one day


@dataclass
class Champion:
    """What the checks need of the champion: its preprocessing (vocabularies and training
    distribution) and, where its weights load, a scorer of cleaned rows."""

    version: str
    preprocessor: Preprocessor
    score: Callable[[pd.DataFrame], np.ndarray] | None = None
    error: str | None = None  # why there is no scorer

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        return self.preprocessor.vocabularies

    @classmethod
    def load(cls, registry: ModelRegistry) -> Champion | None:
        """The current champion, loaded once (torch is imported here, and only if there is
        one); None without a champion. Weights that do not load leave it without a scorer."""
        from pipeline.model.features import Preprocessor
        from pipeline.model.registry import ModelVersionError

        version = registry.champion()
        if version is None:
            return None
        try:
            loaded = registry.load(version)
        except ModelVersionError as err:
            prep = Preprocessor.from_dict(registry.read_json(version, "preprocessing.json"))
            return cls(version, prep, None, str(err))
        from pipeline.model.training import predict_frame

        def score(frame: pd.DataFrame) -> np.ndarray:
            return predict_frame(loaded.module, loaded.preprocessor, frame)

        return cls(version, loaded.preprocessor, score)


def label_values(frame: Frame) -> np.ndarray:
    """The day's labels as floats; NaN for a missing label or one that is not a number."""
    if LABEL_COLUMN not in (frame.column_names if isinstance(frame, pa.Table) else frame.columns):
        return np.zeros(0)
    col = frame.column(LABEL_COLUMN) if isinstance(frame, pa.Table) else frame[LABEL_COLUMN]
    values = col.to_pandas() if isinstance(frame, pa.Table) else col
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values):
        values = pd.to_numeric(values.astype(object), errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def label_counts(labels: np.ndarray) -> LabelCounts:
    """Labelled rows (a label of 0 or 1) and positives."""
    ok = (labels == 0) | (labels == 1)
    return int(ok.sum()), int((labels == 1).sum())


def auc_by_day(y: np.ndarray, p: np.ndarray, codes: np.ndarray, n_days: int) -> np.ndarray:
    """ROC-AUC of scores ``p`` for labels ``y`` (0/1) within each day (``codes``), ties counted
    half, from one sort (Mann-Whitney rank sums); NaN on a day with one class."""
    order = np.lexsort((p, codes))
    c, s, yy = codes[order], p[order], y[order].astype(np.float64)
    n = len(c)
    if n == 0:
        return np.full(n_days, np.nan)
    tie_start = np.r_[True, (c[1:] != c[:-1]) | (s[1:] != s[:-1])]
    group = np.cumsum(tie_start) - 1
    rank = np.arange(n) - np.searchsorted(c, np.arange(n_days))[c] + 1.0
    mean_rank = (np.bincount(group, weights=rank) / np.bincount(group))[group]
    rows = np.bincount(c, minlength=n_days).astype(np.float64)
    pos = np.bincount(c, weights=yy, minlength=n_days)
    rank_sum = np.bincount(c, weights=mean_rank * yy, minlength=n_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * (rows - pos))
    return np.where((pos > 0) & (pos < rows), auc, np.nan)


def _trailing(day: dt.date, counts: Mapping[dt.date, LabelCounts]) -> list[tuple[int, int]]:
    back = (day - dt.timedelta(days=k) for k in range(1, TRAILING_LABEL_DAYS + 1))
    return [counts[d] for d in back if d in counts and counts[d][0] > 0]


def label_outcomes(
    day: dt.date,
    counts: Mapping[dt.date, LabelCounts],
    auc: float | None,
    champion: str | None,
    note: str | None = None,
) -> list[Outcome]:
    """The day's three label-shift outcomes; ``counts``: labelled rows and positives of the day
    and of any earlier day; ``auc``: the champion's on the day (None: not scored, ``note``
    says why)."""
    n, pos = counts.get(day, (0, 0))
    rate = pos / n if n else None
    trailing = _trailing(day, counts)
    t_rows, t_pos = sum(t[0] for t in trailing), sum(t[1] for t in trailing)
    rates = [p / r for r, p in trailing]
    seen = {"rate": rate, "labelled_rows": n, "trailing_days": len(trailing)}

    one_class = n >= MIN_LABELLED_ROWS and pos in (0, n) and 0 < t_pos < t_rows
    observed: Any = {**seen, "trailing_rate": round(t_pos / t_rows, 4) if t_rows else None}
    if not trailing:
        observed = {**seen, "note": "no trailing days with labels: passed"}
    out = [
        outcome(None, rule=ONE_CLASS_RULE, column=LABEL_COLUMN, severity=ERROR,
                success=not one_class, observed_value=observed, element_count=n,
                unexpected_count=None, sample_unexpected=[])
    ]  # fmt: skip

    if auc is None or not np.isfinite(auc):
        why = note or ("no champion" if champion is None else "one class: no AUC")
        inverted, observed = False, {"auc": None, "champion": champion, "note": f"{why}: passed"}
    else:
        se = np.sqrt((n + 1) / (12.0 * pos * (n - pos))) if 0 < pos < n else np.inf
        bound = min(MIN_CHAMPION_AUC, 0.5 - AUC_STANDARD_ERRORS * se)
        inverted = n >= MIN_LABELLED_ROWS and auc < bound
        observed = {"auc": round(float(auc), 4), "champion": champion, "bound": round(bound, 4)}
    out.append(
        outcome(None, rule=AUC_RULE, column=LABEL_COLUMN, severity=ERROR, success=not inverted,
                observed_value=observed, element_count=n, unexpected_count=None,
                sample_unexpected=[])
    )  # fmt: skip

    if rate is None or len(rates) < MIN_TRAILING_DAYS:
        ok, observed = True, {**seen, "note": f"fewer than {MIN_TRAILING_DAYS} trailing days"
                              " with labels (or none today): passed"}  # fmt: skip
    else:
        lo, hi = min(rates) - RATE_MARGIN, max(rates) + RATE_MARGIN
        ok = lo <= rate <= hi
        observed = {**seen, "rate": round(rate, 4),
                    "trailing_range": [round(min(rates), 4), round(max(rates), 4)]}  # fmt: skip
    out.append(
        outcome(None, rule=RATE_RULE, column=LABEL_COLUMN, severity=WARN, success=ok,
                observed_value=observed, element_count=n, unexpected_count=None,
                sample_unexpected=[])
    )  # fmt: skip
    return out


def drift_outcome(
    values: Mapping[str, float], typical: Mapping[str, float], rows: int, note: str | None
) -> Outcome:
    """The day's drift outcome from its PSI per feature (``values``; empty: ``note`` says why
    it was skipped) and the champion's training days' own (``typical``)."""
    if not values:
        return outcome(None, rule=DRIFT_RULE, severity=WARN, success=True,
                       observed_value={"max_psi": None, "note": f"{note}: skipped"},
                       element_count=rows, unexpected_count=None, sample_unexpected=[])  # fmt: skip
    excess = {c: v - typical.get(c, 0.0) for c, v in values.items() if np.isfinite(v)}
    # Only a feature that varies within a day (each training day within PSI_WARN of all of
    # training) can warn; a day-level one (weather, lagged rates) is shown, never warned on.
    within = [c for c in excess if typical.get(c, 0.0) <= PSI_WARN]
    drifting = sorted((c for c in within if excess[c] > PSI_WARN), key=lambda c: -excess[c])
    top = drifting or sorted(excess, key=lambda c: -excess[c])
    observed = {
        "max_psi": round(max(values.values()), 4),
        "drifting": [[c, round(values[c], 4)] for c in drifting[:TOP_FEATURES]],
        "top": [[c, round(values[c], 4), round(typical.get(c, 0.0), 4)] for c in top[:3]],
    }
    return outcome(None, rule=DRIFT_RULE, severity=WARN, success=not drifting,
                   observed_value=observed, element_count=rows, unexpected_count=len(drifting),
                   sample_unexpected=drifting[:TOP_FEATURES])  # fmt: skip


def _model_frame(spec: TaskSpec, frames: list[Frame]) -> pd.DataFrame:
    """The model's columns and the label of the given days' rows, as one frame."""
    cols = [LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    if isinstance(frames[0], pa.Table):
        tables = [t.select(cols) for t in frames]
        try:
            frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    else:
        frame = pd.concat([f[cols] for f in frames], ignore_index=True)
    for col in spec.model_numeric:
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values):
            frame[col] = pd.to_numeric(values.astype(object), errors="coerce")
    return frame


@dataclass
class ShiftFindings:
    """Per day of a run: the champion's AUC and each feature's PSI, with why they are absent."""

    auc: dict[dt.date, float]
    psi: dict[dt.date, dict[str, float]]
    auc_note: dict[dt.date, str]
    psi_note: dict[dt.date, str]


def champion_findings(
    spec: TaskSpec, frames: Mapping[dt.date, Frame], champion: Champion | None
) -> ShiftFindings:
    """The champion's AUC and the PSI of each feature, on every day of the run: one frame of all
    the days with the model's columns, scored in one call, binned with one bincount per
    feature."""
    days = list(frames)
    found = ShiftFindings({}, {}, {}, {})
    if champion is None:
        found.auc_note = found.psi_note = dict.fromkeys(days, "no champion")
        return found
    prep = champion.preprocessor
    has_distribution = bool(prep.decile_shares or prep.category_shares)
    cols = {LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric}
    usable = []
    for day, frame in frames.items():
        names = frame.column_names if isinstance(frame, pa.Table) else frame.columns
        if not len(frame) or not cols <= set(names):
            found.auc_note[day] = found.psi_note[day] = "no rows, or not every model column"
        else:
            usable.append(day)
    if not has_distribution:
        for day in usable:
            found.psi_note[day] = (
                f"champion {champion.version} has no training distribution in its"
                " preprocessing.json (saved before drift checks)"
            )
    if not usable:
        return found
    frame = _model_frame(spec, [frames[d] for d in usable])
    rows = np.array([len(frames[d]) for d in usable])
    codes = np.repeat(np.arange(len(usable)), rows)
    if has_distribution:
        per_feature = day_psi(prep, frame, codes, len(usable))
        for name, feature in zip(spec.calendar, spec.calendar_features, strict=True):
            if name in DAY_CALENDAR:
                per_feature.pop(feature, None)
        for i, day in enumerate(usable):
            found.psi[day] = {c: float(v[i]) for c, v in per_feature.items()}
    if champion.score is None:
        for day in usable:
            found.auc_note[day] = f"champion {champion.version} does not load ({champion.error})"
        return found
    y = frame[LABEL_COLUMN]
    y = pd.to_numeric(y.astype(object), errors="coerce") if y.dtype == object else y
    y = y.to_numpy(dtype=np.float64, na_value=np.nan)
    labelled = (y == 0) | (y == 1)
    try:
        scores = champion.score(frame)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        for day in usable:
            found.auc_note[day] = f"champion {champion.version} could not score the day ({err})"
        return found
    auc = auc_by_day(y[labelled], scores[labelled], codes[labelled], len(usable))
    for i, day in enumerate(usable):
        found.auc[day] = float(auc[i])
    return found
