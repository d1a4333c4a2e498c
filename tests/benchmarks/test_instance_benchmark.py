"""benchmarks/instance.py --quick runs on both instances and prints its table (no time is
asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import ensure_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_instance_benchmark_quick(tmp_path: Path):
    ensure_server()  # skips (or fails in CI) here, not inside the script, without PostgreSQL
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "unused"), "TMPDIR": str(tmp_path)}
    command = [sys.executable, str(ROOT / "benchmarks" / "instance.py"), "--quick",
               "--results-dir", str(tmp_path / "results")]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.splitlines()[0].startswith("Dagster instance, SQLite vs PostgreSQL")
    for measure in ("backfill, 4 days, one run: PostgreSQL vs SQLite instance", "retrain (",
                    "backfill + retrain, 4 days: PostgreSQL vs SQLite"):  # fmt: skip
        assert measure in out, out
    assert out.rstrip().splitlines()[-1].split()[-1] in {"yes", "no"}
    (result,) = (tmp_path / "results").glob("instance-*.json")
    payload = json.loads(result.read_text())
    assert payload["quick"] and payload["days"] == 4
    for side in ("sqlite", "postgres"):
        assert len(payload["seconds"][side]["total"]) == 1
