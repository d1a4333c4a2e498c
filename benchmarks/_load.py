"""Load generators for benchmarks/serving.py: an open-loop one in Python, and Debian's wrk.

Open loop (:func:`open_loop`, run in its own process by :func:`run_open_loop`): request ``i`` is
due at ``start + i / rate`` whatever happened to the ones before; a pool of keep-alive
connections (raw HTTP/1.1 over asyncio streams, uvloop when installed) takes the due requests in
order, and a request's latency runs from its *scheduled* time to the end of its answer, so a
server that falls behind is charged for the wait (no coordinated omission). Optionally some
clients send 1,000-record batches back to back at the same time (closed loop).

Closed loop (:func:`run_wrk`): ``wrk -c N`` with a Lua script that POSTs one body. wrk is
Debian's package: ``apt-get install -y wrk``.

Both report the CPU the generator itself used (it runs on the server's cores).

    python benchmarks/_load.py PORT RATE SECONDS BODIES.json [BATCH.json BATCH_CLIENTS]
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CONNECTIONS = 64  # open loop: enough idle connections that the generator is never the queue
WRK_MISSING = (
    "wrk is not installed: it is Debian's package `wrk` (as root: apt-get install -y wrk);"
    " the closed-loop figures need it"
)


def _request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(match.group(1))) if match else b""
    return status, body


async def open_loop(
    port: int,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    batch: bytes | None = None,
    batch_clients: int = 0,
) -> dict:
    """Sends ``rate * seconds`` requests on schedule; returns latencies (ms) and counts."""
    # time.perf_counter, not loop.time(): uvloop's clock has millisecond steps.
    clock = time.perf_counter
    requests = [_request(port, b) for b in bodies]
    n = int(rate * seconds)
    state = {"next": 0, "errors": 0, "ok": 0, "batches": 0, "batch_errors": 0}
    latencies: list[float] = []
    batch_ms: list[float] = []
    start = clock() + 0.5  # connections open first
    end = start + seconds

    async def single_worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while state["next"] < n:
            i = state["next"]
            state["next"] += 1
            due = start + i / rate
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                status, _ = await _exchange(reader, writer, requests[i % len(requests)])
            except (OSError, asyncio.IncompleteReadError):
                state["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append((clock() - due) * 1000)
            state["ok" if status == 200 else "errors"] += 1
        writer.close()

    async def batch_worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = _request(port, batch)
        while clock() < start:
            await asyncio.sleep(0.01)
        while clock() < end:
            t0 = clock()
            status, _ = await _exchange(reader, writer, request)
            batch_ms.append((clock() - t0) * 1000)
            state["batches" if status == 200 else "batch_errors"] += 1
        writer.close()

    workers = [single_worker() for _ in range(min(CONNECTIONS, max(n, 1)))]
    workers += [batch_worker() for _ in range(batch_clients if batch else 0)]
    cpu0 = time.process_time()
    await asyncio.gather(*workers)
    wall = clock() - start
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "ok": state["ok"],
        "errors": state["errors"],
        "p50": float(np.percentile(latencies, 50)) if latencies else float("inf"),
        "p99": float(np.percentile(latencies, 99)) if latencies else float("inf"),
        "achieved": state["ok"] / wall,
        "batches": state["batches"],
        "batch_errors": state["batch_errors"],
        "batch_p50": float(np.percentile(batch_ms, 50)) if batch_ms else None,
        "generator_cores": (time.process_time() - cpu0) / wall,
    }


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    sent: int
    ok: int
    errors: int
    p50: float
    p99: float
    achieved: float
    generator_cores: float
    server_cores: float
    batches: int = 0
    batch_errors: int = 0
    batch_p50: float | None = None
    extra: dict = field(default_factory=dict)

    def sustained(self, p99_ms: float) -> bool:
        return self.errors == 0 and self.batch_errors == 0 and self.p99 <= p99_ms


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks (USER_HZ)


def run_open_loop(
    port: int,
    server_pid: int,
    bodies: list[bytes],
    rate: float,
    seconds: float,
    batch: bytes | None = None,
    batch_clients: int = 0,
) -> OpenLoopResult:
    """:func:`open_loop` in a child process (so that it does not share this one's GIL)."""
    with tempfile.TemporaryDirectory() as tmp:
        singles = Path(tmp) / "singles.json"
        singles.write_text(json.dumps([b.decode() for b in bodies]))
        cmd = [sys.executable, __file__, str(port), str(rate), str(seconds), str(singles)]
        if batch is not None:
            (Path(tmp) / "batch.json").write_bytes(batch)
            cmd += [str(Path(tmp) / "batch.json"), str(batch_clients)]
        cpu0, wall0 = cpu_seconds(server_pid), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        server = (cpu_seconds(server_pid) - cpu0) / (time.perf_counter() - wall0)
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed: {proc.stderr[-2000:]}")
    return OpenLoopResult(server_cores=server, **json.loads(proc.stdout))


@dataclass
class WrkResult:
    connections: int
    requests: int
    rps: float
    p99: float
    errors: int
    generator_cores: float
    server_cores: float


def _ms(text: str) -> float:
    """wrk's latency (``850.00us``, ``1.20ms``, ``2.00s``, ``1.10m``) in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise ValueError(f"wrk printed a latency this script cannot read: {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def wrk_p99(out: str) -> float:
    """The p99 of wrk's latency distribution (``--latency``), in milliseconds. Read from the
    distribution's own line: a thread-stats column such as ``75.99%`` ends in ``99%`` too."""
    return _ms(re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE).group(1))


def run_wrk(port: int, server_pid: int, body: bytes, connections: int, seconds: float):
    """Closed loop: ``wrk -c connections`` POSTing ``body`` for ``seconds``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise FileNotFoundError(WRK_MISSING)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        url = f"http://127.0.0.1:{port}/predict"
        cmd = [wrk, "-t", str(min(2, connections)), "-c", str(connections), "-d",
               f"{seconds:g}s", "--latency", "-s", str(script), url]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, wall0 = cpu_seconds(server_pid), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        wall = time.perf_counter() - wall0
        server = (cpu_seconds(server_pid) - cpu0) / wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr[-2000:]}")
    out = proc.stdout
    gen = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    n_socket = sum(
        int(x) for x in re.findall(r"\d+", socket_errors.group(1) if socket_errors else "")
    )
    return WrkResult(
        connections=connections,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p99=wrk_p99(out),
        errors=(int(errors.group(1)) if errors else 0) + n_socket,
        generator_cores=gen,
        server_cores=server,
    )


def main(argv: list[str]) -> int:
    port, rate, seconds = int(argv[0]), float(argv[1]), float(argv[2])
    bodies = [b.encode() for b in json.loads(Path(argv[3]).read_text())]
    batch = Path(argv[4]).read_bytes() if len(argv) > 4 else None
    clients = int(argv[5]) if len(argv) > 5 else 0
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(open_loop(port, bodies, rate, seconds, batch, clients))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
