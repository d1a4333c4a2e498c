"""The serving app under load vs the bare model's forward pass on the same records.

A champion is trained on real flights days (through the real pipeline: read_day, clean_day,
train_version with serving.json), then ``flywheel serve`` runs in its own process on 127.0.0.1.
Side A is ``POST /predict`` over HTTP (parsing, the compiled features, the forward pass, the
SQLite log of every prediction); side B is the bare network on the same records' tensors.
Rounds interleave A and B. A third line compares the compiled features with the pandas path
(``clean_day`` + ``Preprocessor.transform``) on the same 1,000 records.

    python benchmarks/serving.py          # 100 req/s for 30 s, 1,000-record batches x 7
    python benchmarks/serving.py --quick  # smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from _common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from _shadow import shadow_cost
from _throughput import Plan, ServerFigures, measure
from _throughput import rows as throughput_rows

from pipeline.data.cleaning import clean_day
from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.model.params import TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.serving.features import records_for_api
from pipeline.serving.served import load_served
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import load_task

SERVE_DAY = dt.date(2025, 6, 12)
# The serving app's configurations measured side by side, each adding one change to the one
# before it: (key, name, `flywheel serve` arguments).
VARIANTS = [
    ("before", "per request (the app before issue 11)", ["--no-micro-batch", "--engine", "torch",
                                                        "--no-gc-freeze"]),
    ("gc-freeze", "per request + gc.freeze", ["--no-micro-batch", "--engine", "torch"]),
    ("batched-torch", "+ micro-batched rounds, torch", ["--engine", "torch",
                                                        "--batch-processes", "0"]),
    ("numpy", "+ NumPy forward pass", ["--batch-processes", "0"]),
    ("default", "+ a batch process for large bodies (the default)", []),
]  # fmt: skip


def build_champion(home: Path, window_days: int, epochs: int):
    """Real flights days under ``home``, and a promoted version trained on them."""
    spec = load_task(None)
    source = make_source(spec)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    holdout = 2
    first = SERVE_DAY - dt.timedelta(days=window_days + holdout + spec.lag_reach_days)
    day = first
    while day <= SERVE_DAY:
        ingest_day(source, raw, day)
        if day >= first + dt.timedelta(days=spec.lag_reach_days):
            build_features_day(spec, raw, feats, day)
        day += dt.timedelta(days=1)
    registry = ModelRegistry(home / "models")
    params = TrainParams(epochs=epochs, window_days=window_days, holdout_days=holdout)
    end = SERVE_DAY - dt.timedelta(days=1)
    version = train_version(spec, feats, registry, params, home / "scratch", end=end, raw=raw)
    registry.promote(version.version, reason="benchmark")
    return spec, raw, registry


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen:
    """``flywheel serve`` (with ``extra`` arguments) on ``port``, once ``/health`` answers."""
    cmd = [sys.executable, "-m", "pipeline.cli", "--home", str(home), "serve", "--port", str(port),
           *extra]  # fmt: skip
    return _started(cmd, port)


def start_constant_app(port: int) -> subprocess.Popen:
    """The ceiling of the stack: FastAPI under uvicorn answering a constant."""
    return _started([sys.executable, str(Path(__file__).parent / "_constant_app.py"), str(port)],
                    port)  # fmt: skip


def _started(cmd: list[str], port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("FLYWHEEL_FEEDBACK_URL",
                                                            "FLYWHEEL_API_TOKEN")}  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the app did not start: {proc.stderr.read().decode()[-2000:]}")


def post(conn: http.client.HTTPConnection, body: bytes) -> float:
    """One POST /predict; returns its latency in ms (and fails loudly on an error)."""
    start = time.perf_counter()
    conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"/predict answered {response.status}: {payload[:300]!r}")
    return elapsed


def paced(conn, bodies: list[bytes], rate: float, seconds: float) -> tuple[list[float], int]:
    """Sends at ``rate`` requests per second (open loop, one connection); latencies and how
    many sends started late because the previous answer had not come back yet."""
    latencies, late = [], 0
    interval, start = 1.0 / rate, time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i * interval
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        else:
            late += wait < -0.001
        latencies.append(post(conn, bodies[i % len(bodies)]))
    return latencies, late


@torch.inference_mode()
def bare_forward(module, cat: torch.Tensor, num: torch.Tensor, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.sigmoid(module(cat, num))
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def throughput(home: Path, singles: list[bytes], batch: bytes, quick: bool, keys: list[str]):
    """The constant app's figures, then those of VARIANTS named in ``keys`` (see
    benchmarks/_throughput.py)."""
    if quick:
        plan = Plan(probe_seconds=1, confirm_seconds=2, wrk_seconds=1, batch_seconds=2,
                    bisections=1)  # fmt: skip
    else:
        plan = Plan(probe_seconds=5, confirm_seconds=30, wrk_seconds=5, batch_seconds=15)
    store = FeedbackStore(FlywheelHome.at(home).feedback_url)

    def stop(proc: subprocess.Popen) -> None:
        proc.terminate()  # SIGTERM: uvicorn's graceful shutdown, as in production
        proc.wait(timeout=60)

    def start_constant():
        port = free_port()
        return start_constant_app(port), port

    ceiling = measure("constant app", start_constant, stop, None, singles, batch, plan, False)
    variants: list[ServerFigures] = []
    for key, name, extra in VARIANTS:
        if key not in keys:
            continue

        def start(extra=extra):
            port = free_port()
            return start_app(home, port, extra), port

        variants.append(
            measure(name, start, stop, lambda: store.counts()["predictions"], singles, batch, plan)
        )
    store.close()
    return ceiling, variants


def side_by_side(variants: list[ServerFigures]) -> list[dict[str, str]]:
    """One row per configuration: its three throughput figures, against the first's."""
    base = variants[0]
    out = []
    for v in variants:
        lb = v.with_batches
        batches = f"{lb.p99:.1f} ms with batches" if lb else "no batch figure"
        out.append({
            "measure": v.name,
            "A": f"{v.rate:.0f} req/s open loop; wrk "
            + "/".join(f"{r.rps:.0f}" for r in v.closed) + f"; {batches}",
            "B": base.name.split(":")[0],
            "ratio": f"{v.rate / base.rate:.1f}x rate" if base.rate else "-",
            "goal": "-",
            "met": "-",
        })  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small model, short load")
    parser.add_argument("--seconds", type=float, default=None, help="load duration (default 30)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    parser.add_argument("--shadow", action="store_true", help="also: p50/p99 with a candidate")
    parser.add_argument(
        "--variants", default=None,
        help="comma-separated configurations of the app to measure, of "
        + ", ".join(key for key, _, _ in VARIANTS) + " (default: all; --quick: default)",
    )  # fmt: skip
    args = parser.parse_args()
    keys = args.variants or ("default" if args.quick else ",".join(k for k, _, _ in VARIANTS))
    keys = [k.strip() for k in keys.split(",")]
    unknown = set(keys) - {k for k, _, _ in VARIANTS}
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    seconds = args.seconds or (3.0 if args.quick else 30.0)
    rounds = args.repeats or (5 if not args.quick else 3)
    window = 3 if args.quick else 14
    torch.set_num_threads(1)  # side B in this process; the app has its own process

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        spec, raw, registry = build_champion(home, window, epochs=1 if args.quick else 5)
        print(f"champion {registry.champion()} trained in {time.perf_counter() - t0:.1f} s")
        model = load_served(registry, registry.champion_record())
        today = raw.read(SERVE_DAY)
        records = records_for_api(today, spec)
        batch = [records[i % len(records)] for i in range(1000)]
        singles = [json.dumps(r).encode() for r in records]
        batch_body = json.dumps({"records": batch}).encode()
        cat1, num1 = (torch.from_numpy(a) for a in model.features.transform(records[:1]))
        catb, numb = (torch.from_numpy(a) for a in model.features.transform(batch))

        port = free_port()
        app = start_app(home, port)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for body in singles[:50]:  # warm-up: connections, allocations, the first batches
                post(conn, body)
            post(conn, batch_body)
            bare_forward(model.module, catb, numb, 5)
            single, bare1, batch_ms, bareb, late = [], [], [], [], 0
            for r in range(rounds):  # interleaved: A, B, A, B, ...
                lat, n_late = paced(conn, singles[r * 7 :], args.rate, seconds / rounds)
                single += lat
                late += n_late
                bare1 += bare_forward(model.module, cat1, num1, 200)
                batch_ms.append(post(conn, batch_body))
                bareb += bare_forward(model.module, catb, numb, 3)
            conn.close()
        finally:
            app.terminate()
            app.wait(timeout=30)

        # Features for the same 1,000 records: compiled fast path vs the pandas path.
        history, _ = raw.read_many([SERVE_DAY - dt.timedelta(days=k) for k in range(1, 8)])
        day_rows = today.iloc[[i % len(today) for i in range(1000)]]
        fast, slow = [], []
        prep = registry.load(registry.champion()).preprocessor
        for _ in range(rounds):
            start = time.perf_counter()
            model.features.transform(batch)
            fast.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            prep.transform(clean_day(day_rows, SERVE_DAY, spec, history).features)
            slow.append((time.perf_counter() - start) * 1000)

        ceiling, variants = throughput(home, singles, batch_body, args.quick, keys)
        shadow = args.shadow and shadow_cost(home, singles, rounds, args.rate, seconds, start_app,
                                             free_port)  # fmt: skip

    p50, p99 = pct(single, 50), pct(single, 99)
    b1, bb = statistics.median(bare1), statistics.median(bareb)
    bm = statistics.median(batch_ms)
    env = environment()
    print(
        f"\nPOST /predict (HTTP, compiled features, SQLite log) vs the bare forward pass;"
        f" {len(single)} single-record requests at {args.rate:g}/s over {seconds:g} s"
        f" ({late} sent late), {len(batch_ms)} batches of 1,000; {describe_environment(env)}"
    )
    rows = [
        {"measure": "single record p50 (ms)", "A": f"{p50:.2f}", "B": f"{b1:.3f}",
         "ratio": f"{p50 / b1:.1f}x", "goal": "-", "met": "-"},
        {"measure": "single record p99 (ms)", "A": f"{p99:.2f}", "B": f"{pct(bare1, 99):.3f}",
         "ratio": f"{p99 / pct(bare1, 99):.1f}x", "goal": "A <= 10 ms",
         "met": "yes" if p99 <= 10 else "no"},
        {"measure": "features, 1,000 records (ms): compiled vs pandas",
         "A": f"{statistics.median(fast):.2f}", "B": f"{statistics.median(slow):.2f}",
         "ratio": f"{statistics.median(slow) / statistics.median(fast):.1f}x faster",
         "goal": "-", "met": "-"},
        {"measure": "batch of 1,000 median (ms)", "A": f"{bm:.2f}", "B": f"{bb:.3f}",
         "ratio": f"{bm / bb:.1f}x", "goal": "A <= 50 ms", "met": "yes" if bm <= 50 else "no"},
    ]  # fmt: skip
    print_table(rows)
    if len(variants) > 1:
        print("\nThe configurations side by side, each adding one change to the one above it")
        print_table(side_by_side(variants))
    for figures in variants:
        print(f"\n{figures.name} (A) vs a FastAPI app answering a constant (B), {len(singles)}"
              " single-record bodies; open loop: a Python asyncio generator (_load.py, 64"
              " connections), closed loop: wrk; both on the same cores as the server")  # fmt: skip
        print_table(throughput_rows(figures, ceiling))
    path = write_results(
        args.results_dir,
        "serving",
        {
            "environment": env,
            "quick": args.quick,
            "rate": args.rate,
            "seconds": seconds,
            "late_sends": late,
            "single_ms": {"p50": p50, "p99": p99, **spread(single)},
            "bare_single_ms": spread(bare1),
            "batch_ms": spread(batch_ms),
            "bare_batch_ms": spread(bareb),
            "features_compiled_ms": spread(fast),
            "features_pandas_ms": spread(slow),
            "table": rows,
            "ceiling": ceiling.to_dict(),
            "variants": [figures.to_dict() for figures in variants],
            "shadow": shadow or None,
        },
    )
    print(f"\nresults: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
