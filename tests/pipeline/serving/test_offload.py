"""Batch processes: large /predict bodies answered by a worker process, over HTTP against the
real app (uvicorn on loopback, a real SQLite store), answering what the app's own process
answers, scoring with the version the app serves, and costing nothing when a worker dies."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import httpx
import numpy as np
import pytest

from pipeline.serving.app import LARGE_BODY_BYTES
from pipeline.serving.served import load_served
from tests.helpers import build_shadow_home, copy_registry, serve_rows, served_app


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    spec, home_dir, registry, versions = build_shadow_home(tmp_path_factory.mktemp("offload"))
    rows = serve_rows(spec, home_dir)
    batch = (rows * (1000 // len(rows) + 1))[:1000]
    assert len(json.dumps({"records": batch})) > LARGE_BODY_BYTES
    return registry, versions, batch


@pytest.fixture(scope="module")
def servers(home, tmp_path_factory):
    """The same registry served twice: with one batch process, and without."""
    registry, _, _ = home
    with (
        served_app(registry, tmp_path_factory.mktemp("with"), batch_processes=1) as offloaded,
        served_app(registry, tmp_path_factory.mktemp("without")) as in_process,
    ):
        wait_ready(offloaded[1])
        yield offloaded, in_process


def batch_state(url: str) -> dict:
    return httpx.get(f"{url}/health").json()["batch_processes"]


def wait_ready(url: str, rows: list[dict] | None = None, timeout: float = 60) -> None:
    """Sends one large body (which starts the workers and is answered in-process), then waits
    for the workers to be ready."""
    big = {"records": [{"x": "y" * 200}] * 200}
    httpx.post(f"{url}/predict", json=big, timeout=30)
    deadline = time.monotonic() + timeout
    while batch_state(url)["state"] != "ready":
        assert time.monotonic() < deadline, batch_state(url)
        time.sleep(0.1)


def test_a_batch_is_answered_by_the_batch_process_as_the_app_would_and_stored(home, servers):
    registry, _, rows = home
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
    _, _, rows = home
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
    _, _, rows = home
    (_, url), _ = servers
    before = batch_state(url)
    for record in rows[:5]:
        assert httpx.post(f"{url}/predict", json=record).status_code == 200
    after = batch_state(url)
    assert (after["requests"], after["answered_in_process"]) == (
        before["requests"], before["answered_in_process"]
    )  # fmt: skip


def test_the_batch_process_scores_with_the_version_served_and_logs_the_shadow(home, tmp_path):
    registry, versions, rows = home
    registry = copy_registry(registry, tmp_path)
    good, bad = load_served(registry, {"version": versions["good"]}), None
    with served_app(registry, tmp_path / "store", batch_processes=1) as (store, url):
        wait_ready(url)
        registry.set_candidate(versions["bad"], versions["good"], "a test's candidate")
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["shadow"]["version"] != versions["bad"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30).json()
        assert answer["model_version"] == versions["good"]
        np.testing.assert_allclose(
            [p["score"] for p in answer["predictions"]], good.scores(rows), atol=1e-12
        )
        bad = load_served(registry, {"version": versions["bad"]})
        for p, want in zip(answer["predictions"][:20], bad.scores(rows[:20]), strict=True):
            row = store.prediction(p["prediction_id"])
            assert row["shadow_version"] == versions["bad"]
            assert row["shadow_score"] == pytest.approx(float(want), abs=1e-9)

        registry.promote(versions["bad"], "a test's swap", forced=True)
        while httpx.get(f"{url}/health").json()["serving_version"] != versions["bad"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        answer = httpx.post(f"{url}/predict", json={"records": rows}, timeout=30).json()
        assert answer["model_version"] == versions["bad"]
        np.testing.assert_allclose(
            [p["score"] for p in answer["predictions"]], bad.scores(rows), atol=1e-12
        )
        assert batch_state(url)["requests"] == 2


def test_a_batch_process_that_dies_costs_the_request_nothing(home, tmp_path):
    registry, _, rows = home
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
