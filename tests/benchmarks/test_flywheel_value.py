"""benchmarks/flywheel_value.py runs and prints its table (--quick; its figures are not
asserted: one small cut-off says nothing about the flywheel's value)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_flywheel_value_quick_prints_its_table(tmp_path: Path):
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "flywheel_value.py"), "--quick",
         "--results-dir", str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("measure"))
    assert lines[header].split() == ["measure", "A", "B", "ratio", "goal", "met"]
    table = lines[header + 2 :]
    assert len(table) == 8 and table[-1].split()[-1] in {"yes", "no"}
    assert any("50% feedback" in line for line in table)
    (path,) = results.glob("flywheel_value-*.json")
    payload = json.loads(path.read_text())
    (fold,) = payload["folds"]
    # every coverage's feedback went through the store and joined training
    sent = {c: v["feedback_rows"] for c, v in fold["flywheel"].items()}
    assert fold["feedback_sent"] > 0 and 0 < sent["0.1"] < sent["0.5"] < sent["1.0"]
    assert set(payload["coverages"]) == {"0.1", "0.5", "1.0"}
