"""Backfills of raw_data and cleaned_features through the real daemon, and the README's CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.integration.conftest import PARTITIONS, flywheel_files
from tests.servers import DagsterStack

pytestmark = pytest.mark.slow


def test_backfill_of_30_partitions_runs_as_one_run(stack: DagsterStack, backfill: dict[str, Any]):
    print(f"backfill of {len(PARTITIONS)} partitions took {backfill['seconds']:.1f} s")  # noqa: T201
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    assert backfill["numPartitions"] == 30
    assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"]  # single-run backfill policy
    for asset in ("raw_data", "cleaned_features"):
        assert [p.stem for p in flywheel_files(stack, asset)] == PARTITIONS
        node = stack.graphql(
            """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) {
                 ... on AssetNode { partitionStats { numMaterialized numPartitions } } } }""",
            {"k": {"path": [asset]}},
        )["assetNodeOrError"]
        assert node["partitionStats"] == {"numMaterialized": 30, "numPartitions": 30}


def _contents(files: list[Path]) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_parquet(p) for p in files}


def test_cli_backfill_of_the_same_range_gives_the_same_content(
    stack: DagsterStack, backfill: dict[str, Any]
):
    """The README's command, rerun over days the backfill filled: same rows, files rewritten."""
    first, last = PARTITIONS[-4], PARTITIONS[-2]
    days = PARTITIONS[-4:-1]
    files = [stack.flywheel_home / a / f"{d}.parquet" for a in ("raw_data", "cleaned_features")
             for d in days]  # fmt: skip
    before, mtimes = _contents(files), {p: p.stat().st_mtime_ns for p in files}
    command = [
        str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "definitions",
        "--select", "raw_data,cleaned_features", "--partition-range", f"{first}...{last}",
    ]  # fmt: skip
    env = {k: v for k, v in stack.env.items() if k != "DAGSTER_DISABLE_TELEMETRY"}
    done = subprocess.run(
        command, cwd=Path(__file__).parents[2], env={**os.environ, **env},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert all(p.stat().st_mtime_ns != mtimes[p] for p in files), "the CLI did not rewrite them"
    after = _contents(files)
    assert after.keys() == before.keys()
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)
    runs = stack.runs({"dagster/asset_partition_range_start": first})
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS", runs
