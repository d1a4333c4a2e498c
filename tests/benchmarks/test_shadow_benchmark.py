"""A smoke run of the shadow-cost measurement (``benchmarks/_shadow.py``, run by
``benchmarks/serving.py --shadow``) on the churn champion: two real ``flywheel serve`` processes,
its table printed, every A-side prediction scored in shadow too (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import build_home, serve_rows

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_shadow_cost_runs_both_apps_and_prints_its_table(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _shadow import shadow_cost
    from serving import free_port, start_app

    spec, home, _ = build_home(tmp_path)
    singles = [json.dumps(r).encode() for r in serve_rows(spec, home)]
    found = shadow_cost(home, singles, 2, 40.0, 2.0, start_app, free_port)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].split()[:4] == ["single", "record", "p50", "(ms)"]
    assert out[-1].split()[-1] in {"yes", "no"}
    assert found["errors"] == {"A": 0, "B": 0}
    assert found["requests"]["A"] == found["requests"]["B"] == 80
    assert found["shadow_scored"] == 80 + 50  # the warm-up's 50 too
    assert "serving" in sys.modules
