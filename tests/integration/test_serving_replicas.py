"""Serving replicas: two real ``flywheel serve`` processes (uvicorn on loopback) against one
PostgreSQL feedback store and one champion pointer. Prediction ids never collide, feedback
posted to either replica joins the prediction the other logged, and both swap to a new
champion."""

from __future__ import annotations

import contextlib
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from pipeline.data.storage import PartitionStore
from pipeline.feedback.store import FeedbackStore
from tests.helpers import SERVE_DAY, build_home, serve_rows, train_small
from tests.postgres import Postgres
from tests.servers import BIN, PROJECT_DIR, free_port, wait_until

REQUESTS_PER_REPLICA, BATCH = 8, 25


@contextlib.contextmanager
def replicas(home: Path, store_url: str, logs: Path, count: int = 2):
    """``count`` ``flywheel serve`` processes, each on its own port; yields their URLs."""
    procs, urls = [], []
    try:
        for i in range(count):
            port = free_port()
            command = [str(BIN / "flywheel"), "--home", str(home), "serve", "--port", str(port),
                       "--feedback-url", store_url, "--poll-seconds", "0.2"]  # fmt: skip
            with (logs / f"serve{i}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(command, cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT)
                )
            urls.append(f"http://127.0.0.1:{port}")

        def logs_tail() -> str:
            return "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("serve*.log")))

        for url in urls:
            wait_until(lambda u=url: requests.get(f"{u}/health", timeout=5).ok, 120,
                       f"{url}/health", 0.3, logs_tail)  # fmt: skip
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def serving_version(url: str) -> str | None:
    return requests.get(f"{url}/health", timeout=5).json()["serving_version"]


@pytest.mark.slow
def test_two_replicas_share_the_feedback_store_and_the_champion(
    tmp_path: Path, postgres_db: Postgres
):
    spec, home, registry = build_home(tmp_path)
    first = registry.champion()
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    second = train_small(spec, feats, raw, registry, tmp_path / "scratch2", SERVE_DAY, seed=1)
    assert second != first
    rows = serve_rows(spec, home)
    logs = tmp_path / "logs"
    logs.mkdir()
    with replicas(home, postgres_db.url, logs) as urls:
        assert [serving_version(u) for u in urls] == [first, first]

        # Both replicas log predictions at the same moment, in parallel requests.
        def predict(job: tuple[str, int]) -> tuple[str, list[str]]:
            url, i = job
            batch = [rows[(i * BATCH + k) % len(rows)] for k in range(BATCH)]
            answer = requests.post(f"{url}/predict", json={"records": batch}, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == first
            return url, [p["prediction_id"] for p in answer.json()["predictions"]]

        jobs = [(url, i) for i in range(REQUESTS_PER_REPLICA) for url in urls]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(predict, jobs))
        by_replica = {url: [pid for u, ids in answers if u == url for pid in ids] for url in urls}
        every_id = [pid for ids in by_replica.values() for pid in ids]
        assert len(every_id) == 2 * REQUESTS_PER_REPLICA * BATCH
        assert len(set(every_id)) == len(every_id)  # no two predictions share an id

        # Feedback posted to the other replica joins the prediction.
        a, b = urls
        crossed = [(b, pid) for pid in by_replica[a][:20]]
        crossed += [(a, pid) for pid in by_replica[b][:20]]
        for url, pid in crossed:
            answer = requests.post(f"{url}/feedback", json={"prediction_id": pid, "label": 1},
                                   timeout=30)  # fmt: skip
            assert answer.status_code == 201, answer.text
            assert answer.json()["prediction_id"] == pid

        # A new champion: both replicas serve it.
        registry.promote(second, reason="test: replicas swap")
        wait_until(lambda: all(serving_version(u) == second for u in urls), 30,
                   "both replicas to serve the new champion", 0.2)  # fmt: skip
        for url in urls:
            answer = requests.post(f"{url}/predict", json=rows[0], timeout=30)
            assert answer.json()["model_version"] == second

    store = FeedbackStore(postgres_db.url)
    try:
        examples = store.labelled_examples()
        assert sorted(examples["prediction_id"]) == sorted(pid for _, pid in crossed)
        assert store.prediction(by_replica[a][0])["model_version"] == first
        assert store.newest_feedback_id() == len(crossed)
    finally:
        store.close()
