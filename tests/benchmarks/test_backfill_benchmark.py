"""benchmarks/backfill.py --quick runs and prints its table (no time is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_backfill_benchmark_quick(tmp_path: Path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "unused"), "TMPDIR": str(tmp_path)}
    command = [sys.executable, str(ROOT / "benchmarks" / "backfill.py"), "--quick",
               "--results-dir", str(tmp_path / "results")]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for measure in ("(1) Flywheel, 3 days", "(2) Dagster floor", "(1)-(2) Flywheel's work",
                    "(3) pipeline/ alone, phase by phase",
                    "10 partitions: separate runs vs one run"):  # fmt: skip
        assert measure in out, out
    assert out.rstrip().splitlines()[0].startswith("backfill of raw_data + cleaned_features")
    results = list((tmp_path / "results").glob("backfill-*.json"))
    assert len(results) == 1
    payload = json.loads(results[0].read_text())
    assert payload["quick"] and payload["days"] == 3 and len(payload["seconds"]["flywheel"]) == 1
