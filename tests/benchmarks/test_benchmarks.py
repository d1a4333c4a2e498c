"""Smoke runs of the benchmarks: each runs with ``--quick`` and prints its table (no timings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE_HEADER = ("measure", "A", "B", "ratio", "goal", "met")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["training_overhead.py", "model_quality.py", "gate.py"])
def test_benchmark_quick_run_prints_its_table(script: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            "--quick",
            "--results-dir",
            str(results),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    header = next((line for line in lines if line.startswith("measure")), None)
    assert header is not None, proc.stdout[-4000:]
    assert header.split() == list(TABLE_HEADER)
    assert lines[-1].split()[-1] in {"yes", "no"}
    assert len(list(results.glob("*.json"))) == 1


def test_the_gate_benchmark_counts_reasons_of_one_kind_together(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from gate import reason_kind

    a = ("champion 20261201T185506565446Z-0b77c8 stays: same data and no significant gain:"
         " ROC-AUC gain +0.0126 [-0.0018, +0.0275] (95%, n=6487), lower bound <= 0.0")  # fmt: skip
    b = a.replace("20261201T185506565446Z-0b77c8", "20261201T190000000000Z-aaaaaa").replace(
        "+0.0126", "-0.0031"
    )
    assert reason_kind(a) == reason_kind(b)
    assert reason_kind(a) != reason_kind(a.replace("same data", "newer data"))
