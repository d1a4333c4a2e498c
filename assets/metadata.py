"""Metadata for the Dagster UI: Markdown previews, tables and plots, built from step results."""

from __future__ import annotations

import base64
from typing import Any

import pandas as pd
from dagster import MetadataValue


def md_text(value: Any) -> str:
    """``value`` as text that fits in one Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"  # NaN: empty
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    return md_text(value)


def preview(frame: pd.DataFrame, rows: int = 5) -> MetadataValue:
    """The first ``rows`` rows as a Markdown table (a backfill writes one per day, so it is
    built here: ``DataFrame.to_markdown`` costs twice as much)."""
    if not len(frame):
        return MetadataValue.md("(no rows)")
    columns = [str(c) for c in frame.columns]
    cells = [[_md_cell(v) for v in frame[c].iloc[:rows].tolist()] for c in frame.columns]
    lines = [
        "| " + " | ".join(_md_cell(c) for c in columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)),
    ]
    return MetadataValue.md("\n".join(lines))


def plots_markdown(plots: dict[str, bytes]) -> MetadataValue:
    """PNG plots inline in one Markdown entry (the UI shows it behind "Show Markdown")."""
    return MetadataValue.md(
        "\n\n".join(
            f"**{name}**\n\n![{name}](data:image/png;base64,{base64.b64encode(png).decode()})"
            for name, png in plots.items()
        )
    )


_PIPES_KINDS = {
    "text": MetadataValue.text,
    "path": MetadataValue.path,
    "json": MetadataValue.json,
    "int": MetadataValue.int,
    "float": MetadataValue.float,
}


def from_pipes_metadata(metadata: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Metadata in Dagster Pipes' form (``raw_value``, ``type``) as the asset's own, for a step
    that ran in-process (the same keys and types as when it reports through Pipes)."""
    out = {}
    for key, entry in metadata.items():
        kind = _PIPES_KINDS.get(entry["type"])
        out[key] = kind(entry["raw_value"]) if kind else entry["raw_value"]
    return out
