"""Data checks: Great Expectations suites built from the task file, answered per day.

The suites come from the task spec (its columns, its ``checks:`` rules and its ``key:``), so a
user's own data gets checks with no code change. A run's days are validated together: their rows
go into one frame with the partition day in a column, one Great Expectations validation runs per
distinct schema (normally one per run), and each day's answer is read from the unexpected rows'
index list (``COMPLETE`` result format). One validation per day would cost ~73 ms each, ~50 s
over a 365-day backfill; ``benchmarks/check_cost.py`` measures the difference.

Each day gets a :class:`DayVerdict`: every expectation with its observed value, its unexpected
count and up to 20 sample bad values, at a severity chosen on purpose: ``ERROR`` (a schema break,
a null label, an over-threshold quarantine; blocking) or ``WARN`` (drift and soft limits).
:class:`VerdictStore` keeps each day's latest verdict as JSON, so that training can leave out the
days whose latest blocking check failed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cleaning import QUARANTINE_REASON, parse_timestamps
from pipeline.registry import ModelRegistry
from pipeline.storage import PartitionStore
from pipeline.task import LABEL_COLUMN, TaskSpec

ERROR, WARN = "ERROR", "WARN"
SAMPLE_SIZE = 20
ROW_COUNT_FACTOR = 3.0  # a day's rows within [median / 3, median * 3] of the trailing days
TRAILING_DAYS = 7
MAX_QUARANTINE_FRACTION = 0.05
UNASSIGNED_FILE = "unassigned.quarantine.parquet"

_DAY = "__flywheel_day"
_TS_DAY = "__flywheel_timestamp_day"
_FINITE = float(np.finfo(np.float64).max)
_NUMERIC_TYPES = [
    *(f"{k}{b}" for k in ("int", "uint") for b in (8, 16, 32, 64)),
    *(f"float{b}" for b in (16, 32, 64)),
    *(f"{k}{b}" for k in ("Int", "UInt") for b in (8, 16, 32, 64)),
    "Float32", "Float64", "int", "float",
]  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, and how a day's answer is read from its result."""

    name: str  # what a person reads, e.g. "'distance' within [0, 6000]"
    severity: str
    expectation: Any  # a ``gx.expectations`` object
    column: str | None = None
    max_fraction: float = 0.0  # a day fails when more of its rows than this share are unexpected
    samples_from: tuple[str, ...] = ()  # columns the sample bad values come from


@dataclass
class DayVerdict:
    """Every expectation's answer for one day of one asset."""

    asset: str
    day: dt.date
    rows: int
    results: list[dict[str, Any]]

    def failures(self, severity: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.results
            if not r["success"] and (severity is None or r["severity"] == severity)
        ]

    def passed(self, severity: str) -> bool:
        return not self.failures(severity)

    @property
    def blocking_failed(self) -> bool:
        return not self.passed(ERROR)

    def reasons(self, severity: str | None = None) -> list[str]:
        """One line per failed expectation: the rule, the column and the count."""
        out = []
        for r in self.failures(severity):
            count = r.get("unexpected_count")
            what = f"{count} of {r['element_count']} rows" if count is not None else "failed"
            out.append(f"{r['rule']}: {what} (observed {r['observed_value']})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "day": self.day.isoformat(),
            "rows": self.rows,
            "blocking_failed": self.blocking_failed,
            "results": self.results,
        }


def _plain(value: Any) -> Any:
    """A JSON-safe copy of a value from a frame or a GX result."""
    if value is None or type(value) in (int, str, bool):  # most values: asked first
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else (None if math.isnan(value) else str(value))
    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NaT or (isinstance(value, pd.Timestamp | dt.date)):
        return None if value is pd.NaT else value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _gx():
    """Great Expectations, imported on first use (the import takes seconds)."""
    import great_expectations as gx

    return gx


def _quiet_context():
    """An ephemeral context: in memory only, no progress bars, no analytics, no files."""
    gx = _gx()
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


def run_suite(frame: pd.DataFrame, rules: list[Rule]) -> list[Any]:
    """One Great Expectations validation of ``frame``: each rule's result, in order."""
    if not rules:
        return []
    gx = _gx()
    context = _quiet_context()
    batch_definition = (
        context.data_sources.add_pandas("flywheel")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    for i, rule in enumerate(rules):
        rule.expectation.meta = {"flywheel_rule": i}
    # The constructor, unlike add_expectation, neither merges look-alike rules nor costs O(n^2).
    suite = gx.ExpectationSuite(name="flywheel", expectations=[r.expectation for r in rules])
    # Batch.validate, not ValidationDefinition.run: the latter also serializes every unexpected
    # value into the (in-memory) results store, which costs more than the validation itself.
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    # COMPLETE for the unexpected rows' index list (each day's answer comes from it); not the
    # unexpected values themselves, nor their counts: samples are taken from the frame.
    result_format = {
        "result_format": "COMPLETE",
        "partial_unexpected_count": 0,
        "exclude_unexpected_values": True,
        "return_unexpected_index_query": False,  # a query string that lists every index
    }
    run = batch.validate(suite, result_format=result_format)
    by_rule = {res.expectation_config.meta["flywheel_rule"]: res for res in run.results}
    return [by_rule[i] for i in range(len(rules))]


def _outcome(of: Rule | None, **fields: Any) -> dict[str, Any]:
    """One expectation's answer; ``of`` is None for those computed here rather than by GX."""
    base = {
        "rule": of.name if of else fields.pop("rule"),
        "expectation": of.expectation.expectation_type if of else "computed by flywheel",
        "column": of.column if of else fields.pop("column", None),
        "severity": of.severity if of else fields.pop("severity"),
    }
    return {**base, **{k: _plain(v) for k, v in fields.items()}}


Frame = pd.DataFrame | pa.Table  # a day's rows: in memory, or as read from its Parquet file


def _names(frame: Frame) -> list[str]:
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
            return "numeric" if _is_numeric(frame, col) or frame[col].isna().all() else "other"

    return tuple(kind(c) for c in columns)


def _concat(parts: list[Frame], columns: list[str]) -> pd.DataFrame:
    """The group's rows, only the ``columns`` the suite looks at, strings as Python objects
    (Great Expectations filters the frame once per expectation; object columns take fastest)."""
    keep = [c for c in columns if c in _names(parts[0])]
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


def _validate_days(
    frames: Mapping[dt.date, Frame],
    columns: Iterable[str],
    build_rules,
    prepare=None,
) -> dict[dt.date, list[dict[str, Any]]]:
    """Validates every non-empty day: one GX call per schema (the presence and kind of the
    ``columns`` the suite looks at, so normally one call in all); returns each day's outcomes."""
    columns = list(dict.fromkeys(columns))
    out: dict[dt.date, list[dict[str, Any]]] = {day: [] for day in frames}
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
            if kind == "numeric" and not _is_numeric(frame, col):  # numbers joined all-null days
                frame[col] = pd.to_numeric(frame[col])
        codes = np.repeat(np.arange(len(days)), rows)
        frame[_DAY] = pd.DatetimeIndex([pd.Timestamp(d, tz="UTC") for d in days])[codes]
        if prepare is not None:
            prepare(frame)
        rules = build_rules(frame)
        for rule, res in zip(rules, run_suite(frame, rules), strict=True):
            for day, outcome in zip(days, _per_day(rule, res, frame, codes, rows), strict=True):
                out[day].append(outcome)
    return out


def _per_day(rule: Rule, res: Any, frame: pd.DataFrame, codes: np.ndarray, rows: np.ndarray):
    """Splits one GX result into one outcome per day (in the order of ``rows``)."""
    result = res.result or {}
    if res.exception_info and res.exception_info.get("raised_exception"):
        message = res.exception_info.get("exception_message") or "raised an exception"
        return [
            _outcome(rule, success=False, observed_value=f"error: {message}",
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
            sample = _plain(details) if details else []
            if whole and rule.column in frame.columns:
                sample = frame[rule.column].iloc[off : off + min(n, SAMPLE_SIZE)].tolist()
            out.append(
                _outcome(rule, success=bool(res.success), observed_value=observed,
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
    out = []
    for d, n in enumerate(rows):
        k, values = int(counts[d]), []
        if k:
            sel = idx[order[starts[d] : starts[d] + min(k, SAMPLE_SIZE)]]
            sample = frame[columns].iloc[sel]
            values = sample.iloc[:, 0].tolist() if len(columns) == 1 else sample.to_dict("records")
        out.append(
            _outcome(
                rule,
                success=k <= rule.max_fraction * n,
                observed_value=round(k / n, 4) if n else None,
                element_count=int(n),
                unexpected_count=k,
                sample_unexpected=values,
            )
        )
    return out


def _is_numeric(frame: pd.DataFrame, col: str) -> bool:
    dtype = frame[col].dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _finite(col: str, severity: str) -> Rule:
    ex = _gx().expectations
    bounds = ex.ExpectColumnValuesToBeBetween(column=col, min_value=-_FINITE, max_value=_FINITE)
    return Rule(f"{col!r} is finite", severity, bounds, col)


def raw_rules(spec: TaskSpec, sample: pd.DataFrame) -> list[Rule]:
    """The raw_data suite for frames shaped like ``sample``."""
    ex = _gx().expectations
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
            column_A=_TS_DAY, column_B=_DAY, ignore_row_if="neither"
        )
        rules.append(Rule(f"timestamp {ts!r} parses and is on the day", WARN, on_day, ts))
    if spec.key and set(spec.key) <= present:
        unique = ex.ExpectCompoundColumnsToBeUnique(column_list=[*spec.key, _DAY])
        name = f"key {list(spec.key)} has no duplicates"
        rules.append(Rule(name, WARN, unique, ",".join(spec.key), 0.0, spec.key))
    ranged = {c for c, r in checks.items() if r.range is not None}  # a range also catches inf
    rules += [
        _finite(c, WARN)
        for c in spec.numeric
        if c in present and c not in ranged and _is_numeric(sample, c)
    ]
    for col, rule in checks.items():
        if col not in present:
            continue
        if rule.range is not None and _is_numeric(sample, col):
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
    ex = _gx().expectations
    expected = [spec.timestamp, LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    label = LABEL_COLUMN
    rules = [
        Rule("has every model column", ERROR,
             ex.ExpectTableColumnsToMatchSet(column_set=expected, exact_match=False)),
        Rule("label is never null", ERROR, ex.ExpectColumnValuesToNotBeNull(column=label), label),
        Rule("label is 0 or 1", ERROR,
             ex.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]), label),
    ]  # fmt: skip
    present = set(sample.columns)
    rules += [
        _finite(c, ERROR) for c in spec.model_numeric if c in present and _is_numeric(sample, c)
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
    return _outcome(
        None, rule=f"row count is not zero and within x{factor:g} of the trailing 7-day median",
        severity=WARN, success=ok, observed_value={"rows": n, "trailing_median": median},
        element_count=n, unexpected_count=None, sample_unexpected=[],
    )  # fmt: skip


def _raw_columns(spec: TaskSpec) -> list[str]:
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

    found = _validate_days(frames, _raw_columns(spec), lambda s: raw_rules(spec, s), prepare)
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
) -> dict[dt.date, DayVerdict]:
    """Checks cleaned rows and the share of each day's raw rows that went to quarantine
    (``quarantines``: each day's quarantine reasons, one per quarantined row)."""
    columns = [spec.timestamp, LABEL_COLUMN, *spec.model_categorical, *spec.model_numeric]
    found = _validate_days(frames, columns, lambda s: feature_rules(spec, s, vocabularies))
    verdicts = {}
    for day, frame in frames.items():
        reasons = quarantines.get(day, [])
        q, total = len(reasons), len(reasons) + len(frame)
        present = [c for c in spec.exclude if c in _names(frame)]
        computed = [
            _outcome(None, rule="no excluded column is present", severity=ERROR,
                     success=not present, observed_value=present, element_count=len(frame),
                     unexpected_count=len(present), sample_unexpected=present),
            _outcome(None, rule=f"quarantined share at most {max_quarantine_fraction:.0%}",
                     column=QUARANTINE_REASON, severity=ERROR,
                     success=q <= max_quarantine_fraction * total,
                     observed_value=round(q / total, 4) if total else 0.0, element_count=total,
                     unexpected_count=q, sample_unexpected=list(reasons[:SAMPLE_SIZE])),
        ]  # fmt: skip
        verdicts[day] = DayVerdict(asset, day, len(frame), [*found[day], *computed])
    return verdicts


class VerdictStore:
    """The latest check verdict of each day: ``<root>/<asset>/<YYYY-MM-DD>.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, asset: str, day: dt.date) -> Path:
        return self.root / asset / f"{day.isoformat()}.json"

    def write(self, verdict: DayVerdict, run_id: str | None = None) -> Path:
        path = self.path(verdict.asset, verdict.day)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**verdict.to_dict(), "run_id": run_id,
                "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
        return path

    def read(self, asset: str, day: dt.date) -> dict[str, Any] | None:
        path = self.path(asset, day)
        return json.loads(path.read_text()) if path.is_file() else None

    def left_out(
        self, days: Iterable[dt.date], assets: Iterable[str] = ("raw_data", "cleaned_features")
    ) -> dict[str, str]:
        """The days whose latest blocking check failed, each with why."""
        out: dict[str, str] = {}
        for day in days:
            why = []
            for asset in assets:
                data = self.read(asset, day)
                if data and data["blocking_failed"]:
                    verdict = DayVerdict(asset, day, data["rows"], data["results"])
                    why.append(f"{asset}: " + "; ".join(verdict.reasons(ERROR)))
            if why:
                out[day.isoformat()] = " | ".join(why)
        return out


def unassigned_path(raw: PartitionStore) -> Path:
    """Where raw_data keeps the source rows that belong to no day (timestamp missing or bad)."""
    return raw.root / UNASSIGNED_FILE


def _unassigned_outcome(spec: TaskSpec, raw: PartitionStore) -> dict[str, Any] | None:
    path = unassigned_path(raw)
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    ts = spec.timestamp
    values = frame[ts].tolist()[:SAMPLE_SIZE] if ts in frame else []
    return _outcome(
        None, rule=f"every source row has a timestamp {ts!r} that parses (else: {path.name})",
        column=ts, severity=WARN, success=frame.empty, observed_value=str(path),
        element_count=len(frame), unexpected_count=len(frame), sample_unexpected=values,
    )  # fmt: skip


def _trailing_counts(store: PartitionStore, days: list[dt.date]) -> dict[dt.date, int]:
    out = {}
    first = min(days)
    for k in range(1, TRAILING_DAYS + 1):
        day = first - dt.timedelta(days=k)
        if store.exists(day):
            out[day] = pq.ParquetFile(store.path(day)).metadata.num_rows
    return out


def _read_columns(path: Path, wanted: list[str]) -> pa.Table:
    """Those of the ``wanted`` columns that the file has (all of them when it has none)."""
    file = pq.ParquetFile(path)  # one open for the schema and the rows
    names = file.schema_arrow.names
    return file.read(columns=[c for c in wanted if c in names] or None)


def quarantine_reasons(path: Path) -> list[str]:
    """A quarantine file's reasons, one per row (all the checks need of it)."""
    if not path.is_file():
        return []
    table = _read_columns(path, [QUARANTINE_REASON])
    if QUARANTINE_REASON not in table.column_names:
        return ["(no reason recorded)"] * table.num_rows
    return table.column(QUARANTINE_REASON).to_pylist()


def check_raw_days(
    spec: TaskSpec,
    raw: PartitionStore,
    verdicts: VerdictStore,
    days: list[dt.date],
    run_id: str | None = None,
    row_count_factor: float = ROW_COUNT_FACTOR,
) -> list[DayVerdict]:
    """Checks the stored raw_data of ``days`` and records each day's verdict."""
    wanted = _raw_columns(spec)
    frames = {}
    for day in days:  # only the columns the suite looks at: a day's file may have many more
        frames[day] = _read_columns(raw.path(day), wanted)
    found = validate_raw(spec, frames, _trailing_counts(raw, days), row_count_factor)
    unassigned = _unassigned_outcome(spec, raw)
    out = []
    for day in days:
        verdict = found[day]
        if unassigned is not None:  # such a row could belong to any day of the run
            verdict.results.append(unassigned)
        verdicts.write(verdict, run_id)
        out.append(verdict)
    return out


def check_feature_days(
    spec: TaskSpec,
    features: PartitionStore,
    verdicts: VerdictStore,
    days: list[dt.date],
    vocabularies: Mapping[str, list[str]] | None = None,
    max_quarantine_fraction: float = MAX_QUARANTINE_FRACTION,
    run_id: str | None = None,
) -> list[DayVerdict]:
    """Checks the stored cleaned_features of ``days`` and records each day's verdict."""
    frames = {day: pq.ParquetFile(features.path(day)).read() for day in days}
    quarantines = {day: quarantine_reasons(features.quarantine_path(day)) for day in days}
    found = validate_features(spec, frames, quarantines, vocabularies, max_quarantine_fraction)
    for day in days:
        verdicts.write(found[day], run_id)
    return [found[day] for day in days]


def champion_vocabularies(registry: ModelRegistry) -> dict[str, list[str]] | None:
    """The champion's training vocabularies (categorical column to known values), if any."""
    champion = registry.champion()
    if champion is None:
        return None
    return registry.read_json(champion, "preprocessing.json")["vocabularies"]
