"""benchmarks/storage.py --quick runs and prints its table (no time is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_storage_benchmark_quick(tmp_path: Path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "unused"), "TMPDIR": str(tmp_path)}
    command = [sys.executable, str(ROOT / "benchmarks" / "storage.py"), "--quick",
               "--results-dir", str(tmp_path / "results")]  # fmt: skip
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert out.splitlines()[0].startswith("FLYWHEEL_HOME on local disk vs on moto's S3 server")
    assert "backfill (3 days)" in out and "<= 2x" in out, out
    (result,) = (tmp_path / "results").glob("storage-*.json")
    payload = json.loads(result.read_text())
    assert payload["quick"] and payload["days"] == 3
    assert len(payload["seconds"]["local"]["backfill"]) == len(payload["seconds"]["s3"]["backfill"])
