"""benchmarks/check_cost.py runs and prints its table (--quick; no time is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_check_cost_quick_prints_its_table(tmp_path: Path):
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "check_cost.py"), "--quick",
         "--results-dir", str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "measure" in done.stdout and "wall time, 7 days" in done.stdout
    (path,) = results.glob("check_cost-*.json")
    payload = json.loads(path.read_text())
    assert len(payload["with_checks_s"]) == len(payload["without_checks_s"]) == 1
    assert list(tmp_path.iterdir()) == [results]  # nothing else written where it ran
