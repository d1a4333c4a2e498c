"""The cost of shadow scoring: single-record ``POST /predict`` p50 and p99 of the serving app
with a candidate in shadow (A: it scores every request with both models and logs both scores)
against the same app without one (B), side by side in one run.

Two ``flywheel serve`` processes run at once on 127.0.0.1, each on its own copy of the registry
(B: the champion alone; A: the same champion and a candidate, a copy of the champion's version
under another name: shadow scoring costs the same whatever the weights) and its own SQLite
feedback store. Rounds interleave A and B at the same open-loop rate on the same bodies.
Called by ``benchmarks/serving.py --shadow``.
"""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from _common import print_table, spread

from pipeline.feedback.schema import predictions
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.model.registry import ModelRegistry

GOAL = 1.30  # shadow scoring adds at most 30% to the p50


def _homes(home: Path, root: Path) -> tuple[Path, Path]:
    """``(with_shadow, without)``: two copies of ``home``'s registry; the first with a candidate."""
    homes = []
    for name in ("with_shadow", "without"):
        shutil.copytree(home / "models", root / name / "models")
        homes.append(root / name)
    registry = ModelRegistry(homes[0] / "models")
    champion = registry.champion()
    copy = f"{champion}-shadow"
    shutil.copytree(registry.path(champion), registry.path(copy))
    registry.set_candidate(copy, champion, "benchmark: a candidate in shadow")
    return homes[0], homes[1]


def _paced(port: int, bodies: list[bytes], rate: float, seconds: float) -> tuple[list, int]:
    """Open loop at ``rate`` per second on one connection: latencies (ms) and errors."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors = [], 0
    interval, start = 1.0 / rate, time.perf_counter()
    for i in range(int(rate * seconds)):
        wait = start + i * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        sent = time.perf_counter()
        conn.request("POST", "/predict", bodies[i % len(bodies)],
                     {"Content-Type": "application/json"})  # fmt: skip
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - sent) * 1000)
        errors += response.status != 200
    conn.close()
    return latencies, errors


def _shadowed(home: Path) -> tuple[int, int]:
    """(predictions logged, of them with a shadow score) in ``home``'s feedback store."""
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
        shadow = conn.execute(
            sa.select(sa.func.count()).where(predictions.c.shadow_score.is_not(None))
        ).scalar()
    store.close()
    return int(total or 0), int(shadow or 0)


def shadow_cost(
    home: Path,
    singles: list[bytes],
    rounds: int,
    rate: float,
    seconds: float,
    start_app: Callable[[Path, int], Any],
    free_port: Callable[[], int],
) -> dict[str, Any]:
    """Measures, prints its table, and returns the figures; ``start_app(home, port)`` starts
    ``flywheel serve`` and returns its process once ``/health`` answers."""
    shadow_home, plain_home = _homes(home, home / "shadow_benchmark")
    ports = {"A": free_port(), "B": free_port()}
    apps = {"A": start_app(shadow_home, ports["A"]), "B": start_app(plain_home, ports["B"])}
    lat: dict[str, list[float]] = {"A": [], "B": []}
    errors = {"A": 0, "B": 0}
    try:
        for side in ("A", "B"):  # warm-up
            _paced(ports[side], singles[:50], rate, 50 / rate)
        for r in range(rounds):  # interleaved: A, B, A, B, ...
            for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                found, bad = _paced(ports[side], singles[r * 7 :], rate, seconds / rounds)
                lat[side] += found
                errors[side] += bad
    finally:
        for proc in apps.values():
            proc.terminate()
            proc.wait(timeout=60)
    logged, shadowed = _shadowed(shadow_home)
    if shadowed != logged:  # the A side must really have scored in shadow
        raise RuntimeError(f"only {shadowed} of {logged} predictions carry a shadow score")
    p50 = {s: float(np.percentile(v, 50)) for s, v in lat.items()}
    p99 = {s: float(np.percentile(v, 99)) for s, v in lat.items()}
    ratio = p50["A"] / p50["B"]
    print(f"\nPOST /predict with a candidate in shadow (A) vs without (B): {len(lat['A'])}"
          f" single-record requests each at {rate:g}/s, {rounds} interleaved rounds")  # fmt: skip
    rows = [
        {"measure": "single record p99 (ms)", "A": f"{p99['A']:.2f}", "B": f"{p99['B']:.2f}",
         "ratio": f"{p99['A'] / p99['B']:.2f}x", "goal": "-", "met": "-"},
        {"measure": "errors", "A": str(errors["A"]), "B": str(errors["B"]), "ratio": "-",
         "goal": "A == B == 0", "met": "yes" if errors["A"] == errors["B"] == 0 else "no"},
        {"measure": "single record p50 (ms)", "A": f"{p50['A']:.2f}", "B": f"{p50['B']:.2f}",
         "ratio": f"{ratio:.2f}x", "goal": f"ratio <= {GOAL:.2f}",
         "met": "yes" if ratio <= GOAL else "no"},
    ]  # fmt: skip
    print_table(rows)
    return {
        "requests": {s: len(v) for s, v in lat.items()},
        "p50_ms": p50,
        "p99_ms": p99,
        "spread_ms": {s: spread(v) for s, v in lat.items()},
        "errors": errors,
        "p50_ratio": ratio,
        "shadow_scored": shadowed,
        "table": rows,
    }
