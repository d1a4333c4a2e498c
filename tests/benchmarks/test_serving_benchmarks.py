"""Smoke runs of the serving and feedback-latency benchmarks: each runs with ``--quick`` and
prints its table (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE_HEADER = ["measure", "A", "B", "ratio", "goal", "met"]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["serving.py", "feedback_latency.py"])
def test_quick_run_prints_its_table(script: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--results-dir",
         str(results)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    header = next((line for line in lines if line.startswith("measure")), None)
    assert header is not None, proc.stdout[-4000:]
    assert header.split() == TABLE_HEADER
    assert lines[-1].split()[-1] in {"yes", "no"}
    assert len(list(results.glob("*.json"))) == 1


def test_wrk_latencies_are_read_in_every_unit_wrk_prints(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _load import _ms

    assert [_ms(t) for t in ("850.00us", "1.20ms", "2.00s", "1.10m")] == pytest.approx(
        [0.85, 1.2, 2000.0, 66000.0]
    )
    with pytest.raises(ValueError, match="cannot read"):
        _ms("n/a")


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000/predict
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms    0.50ms  10.00ms   75.99%
    Req/Sec     1.20k   100.00     1.40k    70.00%
  Latency Distribution
     50%    1.10ms
     75%    1.30ms
     90%    1.60ms
     99%    3.20ms
"""


def test_wrk_p99_is_read_from_the_latency_distribution(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _load import wrk_p99

    assert wrk_p99(WRK_OUTPUT) == pytest.approx(3.2)
