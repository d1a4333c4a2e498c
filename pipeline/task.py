"""The task file's one reader: :func:`parse_task` and :func:`load_task`.

A task is read from a YAML file (see ``pipeline/tasks/flights.yaml``, the built-in task) into a
:class:`TaskSpec`: which columns hold the timestamp, the label and the features. What a spec
holds, and its one writer (:meth:`TaskSpec.to_mapping`), are in :mod:`pipeline.task_spec`; this
module re-exports those names, so a task is imported from here. Nothing else in Flywheel names a
column of a particular data set.
"""

from __future__ import annotations

import codecs
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipeline.task_spec import (
    CALENDAR_FEATURES,
    LABEL_COLUMN,
    SOURCE_KINDS,
    ColumnRule,
    LabelRule,
    LaggedRate,
    SourceSpec,
    TaskSpec,
    TaskSpecError,
)

__all__ = [
    "CALENDAR_FEATURES",
    "LABEL_COLUMN",
    "SOURCE_KINDS",
    "ColumnRule",
    "LabelRule",
    "LaggedRate",
    "SourceSpec",
    "TaskSpec",
    "TaskSpecError",
    "load_task",
    "parse_task",
]

_TOP_KEYS = {
    "name", "source", "timestamp", "label", "features", "exclude", "checks", "key", "slices",
    "label_delay_days",
}  # fmt: skip
_REQUIRED_TOP = {"name", "source", "timestamp", "label", "features"}
_SOURCE_KEYS = {"kind", "path", "encoding"}
_LABEL_KEYS = {"column", "greater_than", "positive_values", "missing_is_positive"}
_FEATURE_KEYS = {"categorical", "numeric", "calendar", "lagged_rates"}
_LAG_KEYS = {"by", "days"}
_RULE_KEYS = {"range", "allowed", "max_null_fraction"}


def _check_keys(where: str, value: Any, allowed: set[str], required: set[str], origin: str):
    if not isinstance(value, dict):
        raise TaskSpecError(f"{origin}: '{where}' must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise TaskSpecError(
            f"{origin}: unknown key '{where}.{unknown[0]}'"
            f" (allowed under '{where}': {', '.join(sorted(allowed))})"
        )
    missing = sorted(required - set(value))
    if missing:
        raise TaskSpecError(f"{origin}: missing required key '{where}.{missing[0]}'")


def _str_list(value: Any, key: str, origin: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskSpecError(f"{origin}: '{key}' must be a list of column names")
    return tuple(value)


def _parse_checks(value: Any, origin: str) -> tuple[tuple[str, ColumnRule], ...]:
    """The ``checks:`` mapping: column name to its rules (see :class:`ColumnRule`)."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TaskSpecError(f"{origin}: 'checks' must be a mapping of column names to rules")
    out = []
    for col, rule in value.items():
        where = f"checks.{col}"
        _check_keys(where, rule, _RULE_KEYS, set(), origin)
        lo_hi = rule.get("range")
        if lo_hi is not None and (
            not isinstance(lo_hi, list)
            or len(lo_hi) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in lo_hi)
            or lo_hi[0] > lo_hi[1]
        ):
            raise TaskSpecError(f"{origin}: '{where}.range' must be [low, high] with low <= high")
        allowed = rule.get("allowed")
        if allowed is not None and (not isinstance(allowed, list) or not allowed):
            raise TaskSpecError(f"{origin}: '{where}.allowed' must be a non-empty list")
        frac = rule.get("max_null_fraction")
        if frac is not None and (
            not isinstance(frac, int | float) or isinstance(frac, bool) or not 0 <= frac <= 1
        ):
            raise TaskSpecError(f"{origin}: '{where}.max_null_fraction' must be between 0 and 1")
        out.append(
            (
                str(col),
                ColumnRule(
                    range=(float(lo_hi[0]), float(lo_hi[1])) if lo_hi is not None else None,
                    allowed=tuple(allowed) if allowed is not None else None,
                    max_null_fraction=float(frac) if frac is not None else None,
                ),
            )
        )
    return tuple(out)


def parse_task(data: Any, origin: str = "<task>", base_dir: Path | None = None) -> TaskSpec:
    """Validates a task mapping (as read from YAML) and returns the spec.

    Raises:
        TaskSpecError: naming the file and the first key that is unknown, missing or wrong.
    """
    if not isinstance(data, dict):
        raise TaskSpecError(f"{origin}: a task file must be a mapping of keys")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise TaskSpecError(
            f"{origin}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(_TOP_KEYS))})"
        )
    missing = sorted(_REQUIRED_TOP - set(data))
    if missing:
        raise TaskSpecError(f"{origin}: missing required key '{missing[0]}'")

    src = data["source"]
    _check_keys("source", src, _SOURCE_KEYS, {"kind"}, origin)
    if src["kind"] not in SOURCE_KINDS:
        raise TaskSpecError(
            f"{origin}: 'source.kind' is {src['kind']!r}; expected one of {', '.join(SOURCE_KINDS)}"
        )
    path = None
    if src["kind"] == "files":
        if not src.get("path"):
            raise TaskSpecError(f"{origin}: missing required key 'source.path' for kind 'files'")
        path = Path(src["path"]).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    elif "path" in src:
        raise TaskSpecError(f"{origin}: 'source.path' is only for kind 'files'")
    encoding = src.get("encoding", "utf-8")
    try:
        encoding = codecs.lookup(str(encoding)).name
    except LookupError as err:
        raise TaskSpecError(f"{origin}: 'source.encoding' {encoding!r} is not an encoding") from err

    lab = data["label"]
    _check_keys("label", lab, _LABEL_KEYS, {"column"}, origin)
    has_gt, has_pv = "greater_than" in lab, "positive_values" in lab
    if has_gt == has_pv:
        raise TaskSpecError(
            f"{origin}: 'label' needs exactly one of 'greater_than' or 'positive_values'"
        )
    if has_gt and not isinstance(lab["greater_than"], int | float):
        raise TaskSpecError(f"{origin}: 'label.greater_than' must be a number")
    if has_pv and (not isinstance(lab["positive_values"], list) or not lab["positive_values"]):
        raise TaskSpecError(f"{origin}: 'label.positive_values' must be a non-empty list")
    if not isinstance(lab.get("missing_is_positive", False), bool):
        raise TaskSpecError(f"{origin}: 'label.missing_is_positive' must be true or false")
    label = LabelRule(
        column=str(lab["column"]),
        greater_than=float(lab["greater_than"]) if has_gt else None,
        positive_values=tuple(lab["positive_values"]) if has_pv else None,
        missing_is_positive=bool(lab.get("missing_is_positive", False)),
    )

    feats = data["features"]
    _check_keys("features", feats, _FEATURE_KEYS, set(), origin)
    categorical = _str_list(feats.get("categorical"), "features.categorical", origin)
    numeric = _str_list(feats.get("numeric"), "features.numeric", origin)
    calendar = _str_list(feats.get("calendar"), "features.calendar", origin)
    for name in calendar:
        if name not in CALENDAR_FEATURES:
            raise TaskSpecError(
                f"{origin}: 'features.calendar' has {name!r};"
                f" expected any of {', '.join(CALENDAR_FEATURES)}"
            )
    lags = []
    for i, rule in enumerate(feats.get("lagged_rates") or []):
        _check_keys(f"features.lagged_rates[{i}]", rule, _LAG_KEYS, _LAG_KEYS, origin)
        by = _str_list(rule["by"], f"features.lagged_rates[{i}].by", origin)
        days = rule["days"]
        if not by or not isinstance(days, int) or days < 1:
            raise TaskSpecError(
                f"{origin}: 'features.lagged_rates[{i}]' needs a non-empty 'by' and 'days' >= 1"
            )
        lags.append(LaggedRate(by=by, days=days))
    if not categorical and not numeric and not calendar and not lags:
        raise TaskSpecError(f"{origin}: 'features' names no feature at all")

    exclude = _str_list(data.get("exclude"), "exclude", origin)
    forbidden = {label.column, str(data["timestamp"]), *exclude}
    for col in (*categorical, *numeric):
        if col in forbidden:
            raise TaskSpecError(
                f"{origin}: feature column {col!r} is the label, the timestamp or in 'exclude'"
            )
    both = set(categorical) & set(numeric)
    if both:
        raise TaskSpecError(f"{origin}: column {sorted(both)[0]!r} is both categorical and numeric")

    checks = _parse_checks(data.get("checks"), origin)
    key = _str_list(data.get("key"), "key", origin)
    slices = _str_list(data.get("slices"), "slices", origin)
    features = {*categorical, *numeric, *(c for r in lags for c in r.by)}
    for col in slices:
        if col not in features:
            raise TaskSpecError(
                f"{origin}: 'slices' names {col!r}, which is not a feature column (a slice must be"
                " known at prediction time)"
            )

    delay = data.get("label_delay_days", 0)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise TaskSpecError(
            f"{origin}: 'label_delay_days' must be a whole number of days >= 0 (how long a batch"
            f" label takes to arrive), got {delay!r}"
        )

    return TaskSpec(
        name=str(data["name"]),
        source=SourceSpec(kind=src["kind"], path=path, encoding=encoding),
        timestamp=str(data["timestamp"]),
        label=label,
        categorical=categorical,
        numeric=numeric,
        calendar=calendar,
        lagged_rates=tuple(lags),
        exclude=exclude,
        checks=checks,
        key=key,
        slices=slices,
        label_delay_days=delay,
        origin=origin,
    )


def load_task(path: str | Path | None = None) -> TaskSpec:
    """Loads a task file, or the built-in flights task when ``path`` is empty."""
    if not path:
        text = resources.files("pipeline.tasks").joinpath("flights.yaml").read_text()
        return parse_task(yaml.safe_load(text), origin="<built-in flights task>")
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TaskSpecError(f"task file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TaskSpecError(f"{path}: not valid YAML: {err}") from err
    return parse_task(data, origin=str(path), base_dir=path.parent)
