"""benchmarks/ddp.py runs and prints its table (--quick; no time is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ddp_quick_prints_its_table(tmp_path: Path):
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ddp.py"), "--quick",
         "--results-dir", str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    header = next(line for line in lines if line.startswith("measure"))
    assert header.split() == ["measure", "A", "B", "ratio", "goal", "met"]
    assert lines[-1].startswith("holdout ROC-AUC") and lines[-1].split()[-1] in {"yes", "no"}
    (path,) = results.glob("ddp-*.json")
    payload = json.loads(path.read_text())
    assert len(payload["one_process_seconds"]) == len(payload["two_processes_seconds"]) == 1
    assert payload["params"]["B"]["devices"] == 2
    assert payload["params"]["B"]["batch_size"] == payload["params"]["A"]["batch_size"]
    assert list(tmp_path.iterdir()) == [results]  # nothing else written where it ran
