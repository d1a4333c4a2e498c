"""Data checks: Great Expectations suites built from the task file, answered per day.

The suites come from the task spec (its columns, its ``checks:`` rules and its ``key:``), so a
user's own data gets checks with no code change. :func:`validate_raw` and
:func:`validate_features` validate all of a run's days with one Great Expectations call each
(:mod:`pipeline.checks.engine`) and give every day a :class:`DayVerdict`, at a severity chosen on
purpose per expectation: ``ERROR`` (a schema break, a null label, an over-threshold quarantine;
blocking) or ``WARN`` (drift and soft limits). :mod:`pipeline.checks.verdicts` keeps each day's
latest verdict, so that training can leave out the days whose latest blocking check failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.checks.engine import (
    DAY_COLUMN,
    Frame,
    Rule,
    import_gx,
    is_numeric,
    names,
    validate_days,
)
from pipeline.checks.results import ERROR, SAMPLE_SIZE, WARN, DayVerdict, outcome
from pipeline.checks.shift import (
    Champion,
    LabelCounts,
    champion_findings,
    drift_outcome,
    label_counts,
    label_outcomes,
    label_values,
)
from pipeline.data.cleaning import QUARANTINE_REASON
from pipeline.data.timestamps import parse_timestamps
from pipeline.task import LABEL_COLUMN, TaskSpec

ROW_COUNT_FACTOR = 3.0  # a day's rows within [median / 3, median * 3] of the trailing days
TRAILING_DAYS = 7
MAX_QUARANTINE_FRACTION = 0.05

_TS_DAY = "__flywheel_timestamp_day"
_FINITE = float(np.finfo(np.float64).max)
_NUMERIC_TYPES = [
    *(f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)),
    *(f"float{b}" for b in (16, 32, 64)),
    *(f"{k}{b}" for k in ("Int", "UInt") for b in (8, 16, 32, 64)),
    "Float32", "Float64", "int", "float",
]  # fmt: skip


def _finite(col: str, severity: str) -> Rule:
    ex = import_gx().expectations
    bounds = ex.ExpectColumnValuesToBeBetween(column=col, min_value=-_FINITE, max_value=_FINITE)
    return Rule(f"{col!r} is finite", severity, bounds, col)


def raw_rules(spec: TaskSpec, sample: pd.DataFrame) -> list[Rule]:
    """The raw_data suite for frames shaped like ``sample``."""
    ex = import_gx().expectations
    checks = dict(spec.checks)
    required = dict.fromkeys([*spec.raw_columns, *spec.key, *checks])
    numeric = [*spec.numeric, *(c for c, r in checks.items() if r.range is not None)]
    if spec.label.greater_than is not None:
        numeric.append(spec.label.column)
    present = set(sample.columns)
    rules = [
        Rule(f"column {c!r} exists", ERROR, ex.ExpectColumnToExist(column=c), c) for c in required
    ]
    rules += [
        Rule(f"{c!r} holds numbers", ERROR,
             ex.ExpectColumnValuesToBeInTypeList(column=c, type_list=_NUMERIC_TYPES), c)
        for c in dict.fromkeys(numeric) if c in present
    ]  # fmt: skip
    ts = spec.timestamp
    if ts in present:
        on_day = ex.ExpectColumnPairValuesToBeEqual(
            column_A=_TS_DAY, column_B=DAY_COLUMN, ignore_row_if="neither"
        )
        rules.append(Rule(f"timestamp {ts!r} parses and is on the day", WARN, on_day, ts))
    if spec.key and set(spec.key) <= present:
        unique = ex.ExpectCompoundColumnsToBeUnique(column_list=[*spec.key, DAY_COLUMN])
        name = f"key {list(spec.key)} has no duplicates"
        rules.append(Rule(name, WARN, unique, ",".join(spec.key), 0.0, spec.key))
    ranged = {c for c, r in checks.items() if r.range is not None}  # a range also catches inf
    rules += [
        _finite(c, WARN)
        for c in spec.numeric
        if c in present and c not in ranged and is_numeric(sample, c)
    ]
    for col, rule in checks.items():
        if col not in present:
            continue
        if rule.range is not None and is_numeric(sample, col):
            lo, hi = rule.range
            between = ex.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi)
            rules.append(Rule(f"{col!r} within [{lo:g}, {hi:g}]", WARN, between, col))
        if rule.allowed is not None:
            allowed = ex.ExpectColumnValuesToBeInSet(column=col, value_set=list(rule.allowed))
            rules.append(Rule(f"{col!r} in the allowed values", WARN, allowed, col))
        if rule.max_null_fraction is not None:
            frac = rule.max_null_fraction
            not_null = ex.ExpectColumnValuesToNotBeNull(column=col, mostly=1 - frac)
            name = f"{col!r} null on at most {frac:.0%} of rows"
            rules.append(Rule(name, WARN, not_null, col, frac))
    return rules


def feature_rules(
    spec: TaskSpec, sample: pd.DataFrame, vocabularies: Mapping[str, list[str]] | None
) -> list[Rule]:
    """The cleaned_features suite; with the champion's ``vocabularies``, the drift rules too."""
    ex = import_gx().expectations
    expected = [spec.timestamp, LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    label = LABEL_COLUMN
    # "label is never null" is answered per day in validate_features: a day whose batch labels
    # have not matured is unlabelled whole, which one validation of many days cannot tell.
    rules = [
        Rule("has every model column", ERROR,
             ex.ExpectTableColumnsToMatchSet(column_set=expected, exact_match=False)),
        Rule("label is 0 or 1", ERROR,
             ex.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]), label),
    ]  # fmt: skip
    present = set(sample.columns)
    rules += [
        _finite(c, ERROR) for c in spec.model_numeric if c in present and is_numeric(sample, c)
    ]
    rules += [
        Rule(f"{col!r} within the champion's vocabulary", WARN,
             ex.ExpectColumnValuesToBeInSet(column=col, value_set=list(vocab)), col)
        for col, vocab in (vocabularies or {}).items() if col in present
    ]  # fmt: skip
    return rules


def _row_count_outcome(day: dt.date, n: int, counts: Mapping[dt.date, int], factor: float):
    back = (day - dt.timedelta(days=k) for k in range(1, TRAILING_DAYS + 1))
    trailing = [counts[d] for d in back if d in counts]
    median = float(np.median(trailing)) if trailing else None
    ok = n > 0 and (median is None or median / factor <= n <= median * factor)
    return outcome(
        None, rule=f"row count is not zero and within x{factor:g} of the trailing 7-day median",
        severity=WARN, success=ok, observed_value={"rows": n, "trailing_median": median},
        element_count=n, unexpected_count=None, sample_unexpected=[],
    )  # fmt: skip


def raw_columns(spec: TaskSpec) -> list[str]:
    """The raw columns the suite looks at."""
    return list(dict.fromkeys([*spec.raw_columns, *spec.key, *(c for c, _ in spec.checks)]))


def validate_raw(
    spec: TaskSpec,
    frames: Mapping[dt.date, Frame],
    counts: Mapping[dt.date, int] | None = None,
    row_count_factor: float = ROW_COUNT_FACTOR,
    asset: str = "raw_data",
) -> dict[dt.date, DayVerdict]:
    """Checks raw rows, each frame being one day's. ``counts``: row counts of earlier days."""
    counts = {**(counts or {}), **{d: len(f) for d, f in frames.items()}}

    def prepare(frame: pd.DataFrame) -> None:
        if spec.timestamp in frame.columns:
            frame[_TS_DAY] = parse_timestamps(frame[spec.timestamp]).dt.floor("D")

    found = validate_days(frames, raw_columns(spec), lambda s: raw_rules(spec, s), prepare)
    verdicts = {}
    for day, frame in frames.items():
        results = [*found[day], _row_count_outcome(day, len(frame), counts, row_count_factor)]
        verdicts[day] = DayVerdict(asset, day, len(frame), results)
    return verdicts


def validate_features(
    spec: TaskSpec,
    frames: Mapping[dt.date, Frame],
    quarantines: Mapping[dt.date, list[str]],
    vocabularies: Mapping[str, list[str]] | None = None,
    max_quarantine_fraction: float = MAX_QUARANTINE_FRACTION,
    asset: str = "cleaned_features",
    history: Mapping[dt.date, LabelCounts] | None = None,
    champion: Champion | None = None,
) -> dict[dt.date, DayVerdict]:
    """Checks cleaned rows and the share of each day's raw rows that went to quarantine
    (``quarantines``: each day's quarantine reasons, one per quarantined row), the label shift
    against the trailing days (``history``: labelled rows and positives of stored days before
    the run's; the run's own days count too) and the champion, and the drift of each feature
    from the champion's training distribution (:mod:`pipeline.checks.shift`). The champion's
    vocabularies are used where ``vocabularies`` is not given."""
    if vocabularies is None and champion is not None:
        vocabularies = champion.vocabularies
    columns = [spec.timestamp, LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    found = validate_days(frames, columns, lambda s: feature_rules(spec, s, vocabularies))
    counts = {**(history or {}), **{d: label_counts(label_values(f)) for d, f in frames.items()}}
    shift = champion_findings(spec, frames, champion)
    version = champion.version if champion else None
    typical = champion.preprocessor.typical_day_psi if champion else {}
    verdicts = {}
    for day, frame in frames.items():
        reasons = quarantines.get(day, [])
        q, total = len(reasons), len(reasons) + len(frame)
        present = [c for c in spec.exclude if c in names(frame)]
        computed = [
            outcome(None, rule="no excluded column is present", severity=ERROR,
                     success=not present, observed_value=present, element_count=len(frame),
                     unexpected_count=len(present), sample_unexpected=present),
            outcome(None, rule=f"quarantined share at most {max_quarantine_fraction:.0%}",
                     column=QUARANTINE_REASON, severity=ERROR,
                     success=q <= max_quarantine_fraction * total,
                     observed_value=round(q / total, 4) if total else 0.0, element_count=total,
                     unexpected_count=q, sample_unexpected=list(reasons[:SAMPLE_SIZE])),
        ]  # fmt: skip
        labels = label_values(frame) if len(frame) else np.zeros(0)
        nulls = int(np.isnan(labels).sum())
        whole = bool(len(labels)) and nulls == len(labels)  # not matured yet: unlabelled whole
        computed.append(
            outcome(None, rule="label is never null", column=LABEL_COLUMN, severity=ERROR,
                    success=nulls == 0 or whole,
                    observed_value="unlabelled day (labels not matured)" if whole else nulls,
                    element_count=len(labels), unexpected_count=0 if whole else nulls,
                    sample_unexpected=[])
        )  # fmt: skip
        psi = shift.psi.get(day, {})
        computed += label_outcomes(day, counts, shift.auc.get(day), version,
                                   shift.auc_note.get(day))  # fmt: skip
        computed.append(drift_outcome(psi, typical, len(frame), shift.psi_note.get(day)))
        n, pos = counts[day]
        finite = [v for v in psi.values() if np.isfinite(v)]
        metrics = {"label_rate": pos / n if n else None, "max_psi": max(finite, default=None)}
        verdicts[day] = DayVerdict(asset, day, len(frame), [*found[day], *computed], metrics)
    return verdicts
