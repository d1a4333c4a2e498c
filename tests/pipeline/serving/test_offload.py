"""Batch processes: large /predict bodies answered by a worker process, over HTTP against the
real app (uvicorn on loopback, a real SQLite store), answering what the app's own process
answers, scoring with the version the app serves, and costing nothing when a worker dies."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipeline.serving.app import LARGE_BODY_BYTES
from pipeline.serving.served import load_served
from tests.helpers import build_shadow_home, copy_registry, serve_rows, served_app
from tests.servers import free_port, wait_until

PROJECT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    spec, home_dir, registry, versions = build_shadow_home(tmp_path_factory.mktemp("offload"))
    rows = serve_rows(spec, home_dir)
    batch = (rows * (1000 // len(rows) + 1))[:1000]
    assert len(json.dumps({"records": batch})) > LARGE_BODY_BYTES
    return registry, versions, batch, home_dir


@pytest.fixture(scope="module")
def servers(home, tmp_path_factory):
    """The same registry served twice: with one batch process, and without."""
    registry, _, _, _ = home
    with (
        served_app(registry, tmp_path_factory.mktemp("with"), batch_processes=1) as offloaded,
        served_app(registry, tmp_path_factory.mktemp("without")) as in_process,
    ):
        wait_ready(offloaded[1])
        yield offloaded, in_process


def batch_state(url: str) -> dict:
    return httpx.get(f"{url}/health").json()["batch_processes"]


def wait_ready(url: str, timeout: float = 60) -> None:
    """Sends one large body (which starts the workers and is answered in-process), then waits
    for the workers to be ready."""
    big = {"records": [{"x": "y" * 200}] * 200}
    httpx.post(f"{url}/predict", json=big, timeout=30)
    wait_health(url, lambda h: h["batch_processes"]["state"] == "ready", "the workers", timeout)


def wait_health(url: str, ready, what: str, timeout: float = 30) -> None:
    """Polls ``/health`` until ``ready(its JSON)`` holds."""
    wait_until(lambda: ready(httpx.get(f"{url}/health").json()), timeout, what, interval=0.1)


def test_a_batch_is_answered_by_the_batch_process_as_the_app_would_and_stored(home, servers):
    registry, _, rows, _ = home
    (store, url), (_, plain_url) = servers
    before = batch_state(url)["requests"]
    body = {"records": rows}
    got = httpx.post(f"{url}/predict", json=body, timeout=30)
    want = httpx.post(f"{plain_url}/predict", json=body, timeout=30)
    assert got.status_code == want.status_code == 200
    assert batch_state(url)["requests"] == before + 1
    got, want = got.json(), want.json()
    assert got["model_version"] == want["model_version"] == registry.champion()
    assert got["threshold"] == want["threshold"]
    scores = [p["score"] for p in got["predictions"]]
    np.testing.assert_allclose(scores, [p["score"] for p in want["predictions"]], atol=1e-12)
    assert [p["decision"] for p in got["predictions"]] == [
        p["decision"] for p in want["predictions"]
    ]
    for p, record in zip(got["predictions"], rows, strict=True):
        row = store.prediction(p["prediction_id"])
        assert row is not None and row["record"] == record and row["score"] == p["score"]


def _bad_bodies(rows: list[dict]) -> dict[str, bytes]:
    numeric = next(k for k, v in rows[0].items() if isinstance(v, float))
    text = next(k for k, v in rows[0].items() if isinstance(v, str))
    bad_record = [dict(r) for r in rows]
    bad_record[137][numeric] = "far"
    surrogate = json.dumps({"records": [*rows[:-1], {**rows[0], text: "\ud800"}]})
    return {
        "a bad record": json.dumps({"records": bad_record}).encode(),
        "too many records": json.dumps({"records": rows[:1] * 1001}).encode(),
        "a lone surrogate": surrogate.encode(),
        "not JSON": b'{"records": [' + b"1, " * 20_000 + b"]",
        "records not a list": json.dumps({"records": {"a": "b" * 40_000}}).encode(),
    }


@pytest.mark.parametrize("case", list(_bad_bodies([{"n": 1.0, "s": "a"}] * 1000)))
def test_the_batch_process_refuses_what_the_app_refuses_in_the_same_words(home, servers, case):
    _, _, rows, _ = home
    (_, url), (_, plain_url) = servers
    raw = _bad_bodies(rows)[case]
    assert len(raw) > LARGE_BODY_BYTES
    before = batch_state(url)["requests"]
    headers = {"content-type": "application/json"}
    got = httpx.post(f"{url}/predict", content=raw, headers=headers, timeout=30)
    want = httpx.post(f"{plain_url}/predict", content=raw, headers=headers, timeout=30)
    assert got.status_code == want.status_code == 422
    assert got.json() == want.json()
    assert batch_state(url)["requests"] == before + 1  # the worker said it


def test_single_records_stay_in_the_apps_process(home, servers):
    _, _, rows, _ = home
    (_, url), _ = servers
    before = batch_state(url)
    for record in rows[:5]:
        assert httpx.post(f"{url}/predict", json=record).status_code == 200
    after = batch_state(url)
    assert (after["requests"], after["answered_in_process"]) == (
        before["requests"], before["answered_in_process"]
    )  # fmt: skip


def test_the_batch_process_scores_with_the_version_served_and_logs_the_shadow(home, tmp_path):
    registry, versions, rows, _ = home
    registry = copy_registry(registry, tmp_path)
    good = load_served(registry, {"version": versions["good"]})
    bad = load_served(registry, {"version": versions["bad"]})
    with served_app(registry, tmp_path / "store", batch_processes=1) as (store, url):
        wait_ready(url)
        registry.set_candidate(versions["bad"], versions["good"], "a test's candidate")
        wait_health(url, lambda h: h["shadow"]["version"] == versions["bad"], "the shadow")
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30).json()
        assert answer["model_version"] == versions["good"]
        np.testing.assert_allclose(
            [p["score"] for p in answer["predictions"]], good.scores(rows), atol=1e-12
        )
        for p, want in zip(answer["predictions"][:20], bad.scores(rows[:20]), strict=True):
            row = store.prediction(p["prediction_id"])
            assert row["shadow_version"] == versions["bad"]
            assert row["shadow_score"] == pytest.approx(float(want), abs=1e-9)

        registry.promote(versions["bad"], "a test's swap", forced=True)
        wait_health(url, lambda h: h["serving_version"] == versions["bad"], "the swap")
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30).json()
        assert answer["model_version"] == versions["bad"]
        np.testing.assert_allclose(
            [p["score"] for p in answer["predictions"]], bad.scores(rows), atol=1e-12
        )
        assert batch_state(url)["requests"] == 2


def test_a_batch_process_that_dies_costs_the_request_nothing(home, tmp_path):
    registry, _, rows, _ = home
    with served_app(registry, tmp_path, batch_processes=1) as (store, url):
        others = set(multiprocessing.active_children())  # the module's server's worker
        wait_ready(url)
        workers = set(multiprocessing.active_children()) - others
        assert len(workers) == 1
        os.kill(workers.pop().pid, signal.SIGKILL)
        time.sleep(0.5)
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30)
        assert answer.status_code == 200  # answered in-process
        assert all(store.prediction(p["prediction_id"]) for p in answer.json()["predictions"])
        wait_ready(url)  # a new pool
        assert len(set(multiprocessing.active_children()) - others) == 1
        before = batch_state(url)["requests"]
        assert httpx.post(f"{url}/predict", json={"records": rows}, timeout=30).is_success
        assert batch_state(url)["requests"] == before + 1


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_flywheel_serve_stops_its_batch_process_on_sigterm_and_ctrl_c(home, tmp_path, stop):
    """The real command: its worker answers a batch, and SIGTERM to the server (or Ctrl-C, to
    the whole process group) ends both cleanly, without a traceback."""
    _, _, rows, home_dir = home
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--home", str(home_dir), "serve", "--port",
         str(port), "--feedback-url", f"sqlite:///{tmp_path / 'feedback.sqlite'}"],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).json()["status"] == "ok":
                    break
            assert time.monotonic() < deadline, "flywheel serve did not start"
            time.sleep(0.1)
        wait_ready(url)
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30)
        assert answer.status_code == 200 and batch_state(url)["requests"] >= 1
        workers = _children(proc.pid)
        assert len(workers) >= 1
        if stop == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode in (0, -stop, 128 + stop), out  # uvicorn re-raises the signal
    assert "Traceback" not in out, out
    # The workers have been joined; multiprocessing's resource tracker (a child too) ends when
    # it sees the server's end of its pipe close, a moment after the server.
    deadline = time.monotonic() + 10
    while [pid for pid in workers if _running(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {pid: _cmdline(pid) for pid in workers if _running(pid)}
    assert not left, left


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one whose parent is gone may stay a zombie
    where nothing reaps orphans, as in a container without an init)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status
