"""The throughput half of benchmarks/serving.py (issue 11): one server at a time, measured by
the generators of :mod:`_load`.

For a server (the serving app in some configuration, or the constant app that is the stack's
ceiling) it measures:

- the highest open-loop rate sustained with p99 <= 10 ms and no error: doubling short probes,
  then bisection, then a confirmation run of the full length at the best rate found (stepping
  down 15% at a time, up to 8 runs, while the confirmation fails);
- closed-loop throughput (wrk) at 1, 4, 16 and 64 connections;
- single-record p99 at a light open-loop rate while two clients send 1,000-record batches;
- for the serving app, that every request answered 200 left its rows in the store: the rows
  added while the server ran are counted after it stopped (wrk stops with requests in flight,
  so its phase runs in a server of its own and is not part of the exact count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from _load import OpenLoopResult, WrkResult, run_open_loop, run_wrk

P99_MS = 10.0
CONFIRMATIONS = 8  # full-length runs, each 15% below the one that failed
CONNECTION_LEVELS = (1, 4, 16, 64)


@dataclass
class Plan:
    probe_seconds: float
    confirm_seconds: float
    wrk_seconds: float
    batch_seconds: float
    start_rate: float = 500.0
    max_rate: float = 32000.0
    bisections: int = 2
    light_rate: float = 100.0


@dataclass
class ServerFigures:
    name: str
    sustained: OpenLoopResult | None = None
    probes: list[OpenLoopResult] = field(default_factory=list)
    closed: list[WrkResult] = field(default_factory=list)
    closed_error: str | None = None
    light: OpenLoopResult | None = None
    with_batches: OpenLoopResult | None = None
    expected_rows: int = 0
    logged_rows: int | None = None

    @property
    def rate(self) -> float:
        return self.sustained.rate if self.sustained else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ok(result: OpenLoopResult) -> bool:
    return result.sustained(P99_MS) and result.ok == result.sent


def search_rate(port: int, pid: int, bodies: list[bytes], plan: Plan, figures: ServerFigures):
    """The highest rate sustained (see the module's doc); fills ``figures``."""

    def probe(rate: float, seconds: float) -> OpenLoopResult:
        result = run_open_loop(port, pid, bodies, rate, seconds)
        figures.probes.append(result)
        figures.expected_rows += result.ok
        return result

    best, fail, rate = None, None, plan.start_rate
    while rate <= plan.max_rate:
        if _ok(probe(rate, plan.probe_seconds)):
            best, rate = rate, rate * 2
        else:
            fail = rate
            if best is not None:
                break
            rate /= 2
            if rate < 25:
                return
    for _ in range(plan.bisections if best is not None and fail is not None else 0):
        mid = round((best + fail) / 2)
        if _ok(probe(mid, plan.probe_seconds)):
            best = mid
        else:
            fail = mid
    for _ in range(CONFIRMATIONS):  # a 5 s probe can pass well above what 30 s sustain
        result = probe(best, plan.confirm_seconds)
        if _ok(result):
            figures.sustained = result
            return
        best = round(best * 0.85)


def measure(
    name: str,
    start: Callable[[], tuple[Any, int]],
    stop: Callable[[Any], None],
    count_rows: Callable[[], int] | None,
    singles: list[bytes],
    batch: bytes,
    plan: Plan,
    batches: bool = True,
) -> ServerFigures:
    """All the figures of one server. ``start`` returns (process, port); ``count_rows`` (None
    for the constant app) counts the store's prediction rows."""
    figures = ServerFigures(name)
    proc, port = start()  # closed loop in a server of its own (see the module's doc)
    try:
        run_open_loop(port, proc.pid, singles, 200, 1.0)  # warm-up
        for connections in CONNECTION_LEVELS:
            figures.closed.append(
                run_wrk(port, proc.pid, singles[0], connections, plan.wrk_seconds)
            )
    except FileNotFoundError as err:
        figures.closed_error = str(err)
        print(err)
    finally:
        stop(proc)
    before = count_rows() if count_rows else 0
    proc, port = start()
    try:
        warm = run_open_loop(port, proc.pid, singles, 200, 1.0)
        figures.expected_rows += warm.ok
        if batches and count_rows:
            figures.expected_rows += warm_batches(port, batch)
        search_rate(port, proc.pid, singles, plan, figures)
        if not batches:
            return figures
        figures.light = run_open_loop(port, proc.pid, singles, plan.light_rate, plan.batch_seconds)
        figures.with_batches = run_open_loop(
            port, proc.pid, singles, plan.light_rate, plan.batch_seconds, batch, 2
        )
        for result in (figures.light, figures.with_batches):
            figures.expected_rows += result.ok + 1000 * result.batches
    finally:
        stop(proc)
    if count_rows:
        figures.logged_rows = count_rows() - before
    return figures


def warm_batches(port: int, batch: bytes, timeout: float = 60.0) -> int:
    """Sends batches until the app's batch processes (which start on the first large body) are
    ready and have loaded the model, so that no measurement sees them start. Returns the
    records stored."""
    import http.client
    import json
    import time

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body, {"content-type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    stored, deadline = 0, time.monotonic() + timeout
    while True:
        status, _ = call("POST", "/predict", batch)
        stored += 1000 if status == 200 else 0
        state = json.loads(call("GET", "/health")[1]).get("batch_processes")
        if state is None or (state["state"] == "ready" and state["requests"] > 0):
            return stored
        if time.monotonic() > deadline:
            raise RuntimeError(f"the batch processes did not start: {state}")
        time.sleep(0.2)


def falls(closed: list[WrkResult]) -> bool:
    """Whether throughput falls as connections rise: a level below 90% of the best before it."""
    best = 0.0
    for result in closed:
        if result.rps < 0.9 * best:
            return True
        best = max(best, result.rps)
    return False


def rows(app: ServerFigures, ceiling: ServerFigures) -> list[dict[str, str]]:
    """The table of ``app`` (side A) against the constant app (side B)."""
    goal_rate = min(2000.0, 0.25 * ceiling.rate)
    s = app.sustained
    out = [
        {
            "measure": f"open loop: highest rate with p99 <= {P99_MS:g} ms (req/s)",
            "A": f"{app.rate:.0f}" + (f" (p99 {s.p99:.1f} ms)" if s else ""),
            "B": f"{ceiling.rate:.0f}",
            "ratio": f"{app.rate / ceiling.rate:.0%}" if ceiling.rate else "-",
            "goal": f"A >= {goal_rate:.0f}",
            "met": "yes" if s and app.rate >= goal_rate else "no",
        },
        {
            "measure": "  every prediction logged (rows in the store / answers)",
            "A": f"{app.logged_rows}/{app.expected_rows}",
            "B": "-",
            "ratio": "-",
            "goal": "equal",
            "met": "yes" if app.logged_rows == app.expected_rows else "no",
        },
        {
            "measure": "  CPU while sustaining: server / generator (cores)",
            "A": f"{s.server_cores:.2f} / {s.generator_cores:.2f}" if s else "-",
            "B": (
                f"{ceiling.sustained.server_cores:.2f} / {ceiling.sustained.generator_cores:.2f}"
                if ceiling.sustained
                else "-"
            ),
            "ratio": "-",
            "goal": "-",
            "met": "-",
        },
    ]
    by_c = {r.connections: r for r in ceiling.closed}
    for r in app.closed:
        c = by_c.get(r.connections)
        out.append(
            {
                "measure": f"closed loop (wrk), {r.connections} connections: req/s (p99 ms)",
                "A": f"{r.rps:.0f} ({r.p99:.1f})" + (f" {r.errors} errors" if r.errors else ""),
                "B": f"{c.rps:.0f} ({c.p99:.1f})" if c else "-",
                "ratio": f"{r.rps / c.rps:.0%}" if c else "-",
                "goal": "-",
                "met": "-",
            }
        )
    if app.closed:
        gen = max(r.generator_cores for r in app.closed)
        out.append(
            {
                "measure": f"closed loop: no fall, 1 to 64 connections (wrk <= {gen:.2f} cores)",
                "A": " / ".join(f"{r.rps:.0f}" for r in app.closed),
                "B": " / ".join(f"{r.rps:.0f}" for r in ceiling.closed),
                "ratio": "-",
                "goal": "no level < 90% of best below",
                "met": "no" if falls(app.closed) else "yes",
            }
        )
    else:
        out.append({"measure": "closed loop", "A": "skipped", "B": "-", "ratio": "-",
                    "goal": app.closed_error or "-", "met": "no"})  # fmt: skip
    lb, light = app.with_batches, app.light
    out.append(
        {
            "measure": f"single p99 at {light.rate:g}/s, 2 clients sending 1,000-record batches"
            f" (ms; {lb.batches} batches, median {lb.batch_p50 or 0:.0f} ms)",
            "A": f"{lb.p99:.1f}",
            "B": f"{light.p99:.1f} (no batches)",
            "ratio": f"{lb.p99 / light.p99:.1f}x",
            "goal": "A <= 25 ms",
            "met": "yes" if lb.p99 <= 25 and lb.errors == 0 else "no",
        }
    )
    return out
