"""Great Expectations, one validation for many days, answered per day.

A run's days are validated together: their rows go into one frame with the partition day in a
column (:data:`DAY_COLUMN`), one validation runs per distinct schema (normally one per run), and
each day's answer is read from the unexpected rows' index list (``COMPLETE`` result format). One
validation per day would cost ~73 ms each, ~50 s over a 365-day backfill;
``benchmarks/check_cost.py`` measures the difference.

Each day gets a :class:`DayVerdict`: every expectation (a :class:`Rule`) with its observed value,
its unexpected count and up to :data:`SAMPLE_SIZE` sample bad values, at a severity chosen on
purpose: ``ERROR`` (blocking) or ``WARN``. The suites are in :mod:`pipeline.checks.suites`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.checks.results import SAMPLE_SIZE, Outcome, outcome, plain

DAY_COLUMN = "__flywheel_day"  # the partition day of each row, in the validated frame


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, and how a day's answer is read from its result."""

    name: str  # what a person reads, e.g. "'distance' within [0, 6000]"
    severity: str
    expectation: Any  # a ``gx.expectations`` object
    column: str | None = None
    max_fraction: float = 0.0  # a day fails when more of its rows than this share are unexpected
    samples_from: tuple[str, ...] = ()  # columns the sample bad values come from


def import_gx():
    """Great Expectations, imported on first use (the import takes seconds)."""
    import great_expectations as gx

    return gx


def _quiet_context():
    """An ephemeral context: in memory only, no progress bars, no analytics, no files."""
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


# Expectations that read the frame's column names, not its rows.
_NAMES_ONLY = frozenset({"expect_column_to_exist", "expect_table_columns_to_match_set"})
WHOLE, NAMES = ("*",), ()  # rule_columns of a rule that reads every column, or none


def rule_columns(rule: Rule) -> tuple[str, ...]:
    """The columns a rule reads: those it names; :data:`NAMES` for one that reads only the
    column names; :data:`WHOLE` for another table-level one (a row count, say)."""
    expectation = rule.expectation
    if expectation.expectation_type in _NAMES_ONLY:
        return NAMES
    found = [getattr(expectation, a, None) for a in ("column", "column_A", "column_B")]
    found += list(getattr(expectation, "column_list", None) or [])
    return tuple(dict.fromkeys(c for c in found if c)) or WHOLE


def run_suite(frame: pd.DataFrame, rules: list[Rule]) -> list[Any]:
    """Great Expectations on ``frame``: each rule's result, in order.

    Rules that read the same columns are validated together on a frame of those columns alone
    (sharing the index, so the unexpected rows' index list still names rows of ``frame``), and
    the table-level rules on the frame's columns without its rows. Great Expectations copies its
    whole batch once per row-level expectation (filtering out nulls); on the full frame of a
    year's days that copying was most of the checks' time, growing with rows times columns.
    """
    if not rules:
        return []
    gx = import_gx()
    context = _quiet_context()
    batch_definition = (
        context.data_sources.add_pandas("flywheel")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, rule in enumerate(rules):
        rule.expectation.meta = {"flywheel_rule": i}
        groups.setdefault(rule_columns(rule), []).append(i)
    # COMPLETE for the unexpected rows' index list (each day's answer comes from it); not the
    # unexpected values themselves, nor their counts: samples are taken from the frame.
    result_format = {
        "result_format": "COMPLETE",
        "partial_unexpected_count": 0,
        "exclude_unexpected_values": True,
        "return_unexpected_index_query": False,  # a query string that lists every index
    }
    by_rule: dict[int, Any] = {}
    for n, (columns, members) in enumerate(groups.items()):
        if columns == NAMES:
            part = frame.iloc[:0]
        elif columns == WHOLE:
            part = frame
        else:
            part = frame[[c for c in columns if c in frame.columns]]
        # The constructor, unlike add_expectation, neither merges look-alike rules nor costs
        # O(n^2).
        suite = gx.ExpectationSuite(
            name=f"flywheel-{n}", expectations=[rules[i].expectation for i in members]
        )
        # Batch.validate, not ValidationDefinition.run: the latter also serializes every
        # unexpected value into the (in-memory) results store, which costs more than the
        # validation itself.
        batch = batch_definition.get_batch(batch_parameters={"dataframe": part})
        run = batch.validate(suite, result_format=result_format)
        by_rule.update((res.expectation_config.meta["flywheel_rule"], res) for res in run.results)
    return [by_rule[i] for i in range(len(rules))]


Frame = pd.DataFrame | pa.Table  # a day's rows: in memory, or as read from its Parquet file


def names(frame: Frame) -> list[str]:
    return list(frame.column_names if isinstance(frame, pa.Table) else frame.columns)


def _kinds(frame: Frame, columns: list[str]) -> tuple[str, ...]:
    """Each column's kind: ``missing``, ``numeric`` (all-null columns join either kind) or
    ``other``."""
    if isinstance(frame, pa.Table):
        types = dict(zip(frame.schema.names, frame.schema.types, strict=True))

        def kind(col: str) -> str:
            t = types.get(col)
            if t is None:
                return "missing"
            numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            return "numeric" if numeric or pa.types.is_null(t) else "other"
    else:

        def kind(col: str) -> str:
            if col not in frame.columns:
                return "missing"
            return "numeric" if is_numeric(frame, col) or frame[col].isna().all() else "other"

    return tuple(kind(c) for c in columns)


def _concat(parts: list[Frame], columns: list[str]) -> pd.DataFrame:
    """The group's rows, only the ``columns`` the suite looks at, strings as Python objects
    (Great Expectations filters the frame once per expectation; object columns take fastest)."""
    keep = [c for c in columns if c in names(parts[0])]
    if isinstance(parts[0], pa.Table):
        try:
            table = pa.concat_tables([t.select(keep) for t in parts], promote_options="permissive")
            frame = table.to_pandas()
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # types that Arrow will not unify
            frame = pd.concat([t.select(keep).to_pandas() for t in parts], ignore_index=True)
    else:
        frame = pd.concat([p[keep] for p in parts], ignore_index=True)
    for col in frame.columns:
        if pd.api.types.is_string_dtype(frame[col].dtype) and frame[col].dtype != object:
            frame[col] = frame[col].astype("category")
    return frame


def validate_days(
    frames: Mapping[dt.date, Frame],
    columns: Iterable[str],
    build_rules,
    prepare=None,
) -> dict[dt.date, list[Outcome]]:
    """Validates every non-empty day: one GX call per schema (the presence and kind of the
    ``columns`` the suite looks at, so normally one call in all); returns each day's outcomes."""
    columns = list(dict.fromkeys(columns))
    out: dict[dt.date, list[Outcome]] = {day: [] for day in frames}
    groups: dict[tuple, list[dt.date]] = {}
    for day, frame in frames.items():
        if len(frame):
            signature = _kinds(frame, columns)
            groups.setdefault(signature, []).append(day)
    for signature, days in groups.items():
        parts = [frames[d] for d in days]
        rows = np.array([len(p) for p in parts])
        frame = _concat(parts, columns)
        for col, kind in zip(columns, signature, strict=True):
            if kind == "numeric" and not is_numeric(frame, col):  # numbers joined all-null days
                frame[col] = pd.to_numeric(frame[col])
        codes = np.repeat(np.arange(len(days)), rows)
        frame[DAY_COLUMN] = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d in days])[codes]
        if prepare is not None:
            prepare(frame)
        rules = build_rules(frame)
        for rule, res in zip(rules, run_suite(frame, rules), strict=True):
            for day, found in zip(days, _per_day(rule, res, frame, codes, rows), strict=True):
                out[day].append(found)
    return out


def _per_day(rule: Rule, res: Any, frame: pd.DataFrame, codes: np.ndarray, rows: np.ndarray):
    """Splits one GX result into one outcome per day (in the order of ``rows``)."""
    result = res.result or {}
    if res.exception_info and res.exception_info.get("raised_exception"):
        message = res.exception_info.get("exception_message") or "raised an exception"
        return [
            outcome(rule, success=False, observed_value=f"error: {message}",
                     element_count=int(n), unexpected_count=None, sample_unexpected=[])
            for n in rows
        ]  # fmt: skip
    if "unexpected_index_list" not in result:  # a table-level expectation: one answer for all
        observed = result.get("observed_value")
        if observed is None and rule.expectation.expectation_type == "expect_column_to_exist":
            observed = "present" if res.success else "missing"
        details = result.get("details", {}).get("mismatched")
        # A missing or mistyped column makes every row of the day unusable; a mistyped one's
        # first values are the samples.
        whole = not res.success and rule.column is not None
        offsets = np.cumsum(rows) - rows
        out = []
        for off, n in zip(offsets, rows, strict=True):
            sample = plain(details) if details else []
            if whole and rule.column in frame.columns:
                sample = frame[rule.column].iloc[off : off + min(n, SAMPLE_SIZE)].tolist()
            out.append(
                outcome(rule, success=bool(res.success), observed_value=observed,
                         element_count=int(n), unexpected_count=int(n) if whole else None,
                         sample_unexpected=sample)
            )  # fmt: skip
        return out
    idx = np.asarray(result.get("unexpected_index_list") or [], dtype=np.int64)
    day_of = codes[idx]
    counts = np.bincount(day_of, minlength=len(rows))
    order = np.argsort(day_of, kind="stable")
    starts = np.searchsorted(day_of[order], np.arange(len(rows)))
    columns = list(rule.samples_from or (rule.column,))
    name, kind, severity = rule.name, rule.expectation.expectation_type, rule.severity
    out = []
    for d, n in enumerate(rows.tolist()):
        k, values = int(counts[d]), []
        if k:
            sel = idx[order[starts[d] : starts[d] + min(k, SAMPLE_SIZE)]]
            sample = frame[columns].iloc[sel]
            found = sample.iloc[:, 0].tolist() if len(columns) == 1 else sample.to_dict("records")
            values = plain(found)
        # Built directly (every value is plain already): a year of days makes 27k of these.
        out.append(
            Outcome(name, kind, rule.column, severity, k <= rule.max_fraction * n,
                    round(k / n, 4) if n else None, n, k, values)
        )  # fmt: skip
    return out


def is_numeric(frame: pd.DataFrame, col: str) -> bool:
    dtype = frame[col].dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
