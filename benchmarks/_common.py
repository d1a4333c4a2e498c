"""Shared helpers of the benchmarks: the machine's description, the final table, the JSON file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.data.cleaning import clean_day
from pipeline.data.sources import make_source
from pipeline.task import TaskSpec

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"
LIBRARIES = ("torch", "pytorch-lightning", "numpy", "pandas", "scikit-learn")


def environment() -> dict[str, Any]:
    """Core count, Python and the versions of the libraries that decide the numbers."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "libraries": versions,
    }


def describe_environment(env: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    return f"{env['cores']} cores ({env['machine']}), Python {env['python']}, {libs}"


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_table(rows: list[dict[str, str]]) -> None:
    """The final table: measure, A, B, ratio, goal, met."""
    headers = ["measure", "A", "B", "ratio", "goal", "met"]
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in headers}
    line = "  ".join(h.ljust(widths[h]) for h in headers)
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(row[h].ljust(widths[h]) for h in headers))


def write_results(results_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` as ``<results_dir>/<name>-<UTC time>.json`` and returns the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def clean_days(spec: TaskSpec, first: dt.date, last: dt.date):
    """Cleaned rows of the days ``first``..``last`` (inclusive), each with its lagged-rate
    history.

    Goes through the real pipeline: ``read_day`` then ``clean_day`` with the raw rows of the
    days its lagged rates read (``spec.history_days``: the days whose labels have matured by
    the row's day) as history.
    """
    source = make_source(spec)
    n = (last - first).days + 1
    reach = spec.lag_reach_days
    days = [first + dt.timedelta(days=i) for i in range(-reach, n)]
    raw = {day: source.read_day(day) for day in days}
    frames = []
    for day in days[reach:]:
        history = pd.concat([raw[d] for d in spec.history_days(day)]) if reach else None
        frames.append(clean_day(raw[day], day, spec, history).features)
    return pd.concat(frames, ignore_index=True)
