"""The serving app against a real uvicorn server on 127.0.0.1, and its compiled fast path."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from pipeline.data.storage import PartitionStore
from pipeline.serving.body import MAX_BODY_BYTES
from pipeline.serving.served import load_served
from tests.helpers import SERVE_DAY, build_home, serve_rows, served_app, train_small


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("serving"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path, "s3cret") as (store, url):
        headers = {"Authorization": "Bearer s3cret"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            yield spec, home_dir, registry, store, client


def test_version_carries_the_serving_tables(home):
    _, _, registry = home
    version = registry.champion()
    assert "serving.json" in registry.manifest(version)["files"]
    doc = registry.read_json(version, "serving.json")
    assert doc["lagged_rates_as_of"] == SERVE_DAY.isoformat()
    assert doc["lagged_rates"][0]["feature"] == "rate_region_3d"
    assert {row[0] for row in doc["lagged_rates"][0]["rows"]} == {"north", "south", "east", "west"}


# -- the HTTP API ------------------------------------------------------------------------------
def test_predict_single_and_batch_and_logging(served):
    spec, home_dir, registry, store, client = served
    records = serve_rows(spec, home_dir)
    one = client.post("/predict", json=records[0])
    assert one.status_code == 200, one.text
    assert one.json()["model_version"] == registry.champion()
    assert 0.0 <= one.json()["score"] <= 1.0
    batch = client.post("/predict", json={"records": records[:100]})
    assert batch.status_code == 200
    preds = batch.json()["predictions"]
    assert len(preds) == 100 and len({p["prediction_id"] for p in preds}) == 100
    model = load_served(registry, registry.champion_record())
    assert np.allclose([p["score"] for p in preds], model.scores(records[:100]), atol=1e-6)
    logged = store.prediction(preds[3]["prediction_id"])
    assert logged["record"] == records[3]
    assert logged["decision"] == preds[3]["decision"]
    assert store.counts()["predictions"] == 101


def test_bad_requests(served):
    spec, home_dir, _, _, client = served
    record = serve_rows(spec, home_dir)[0]
    missing = {k: v for k, v in record.items() if k != "usage"}
    r = client.post("/predict", json=missing)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "usage"]
    r = client.post("/predict", json={"records": [record, {**record, "tenure": "lots"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records", 1, "tenure"]
    r = client.post("/predict", json={**record, "event_time": "yesterday"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "event_time"]
    r = client.post("/predict", json={"records": [record] * 1001})
    assert r.status_code == 422 and "1000" in r.json()["detail"][0]["msg"]
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    big = b'{"records": [' + b" " * (MAX_BODY_BYTES + 10) + b"]}"
    assert client.post("/predict", content=big).status_code == 413
    assert client.post("/feedback", json={"prediction_id": "nope", "label": 1}).status_code == 404
    r = client.post("/feedback", json={"prediction_id": "x", "label": 2})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "label"]
    r = client.post("/feedback", json={"label": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prediction_id"]
    anonymous = httpx.post(f"{client.base_url}/predict", json=record)
    assert anonymous.status_code == 401
    assert httpx.get(f"{client.base_url}/health").status_code == 200  # GETs need no token


def test_feedback_is_idempotent_and_concurrent_writers_lose_nothing(served):
    spec, home_dir, _, store, client = served
    records = serve_rows(spec, home_dir)
    ids = []
    for start in range(0, 2000, 500):
        chunk = [records[i % len(records)] for i in range(start, start + 500)]
        r = client.post("/predict", json={"records": chunk[:500]})
        ids += [p["prediction_id"] for p in r.json()["predictions"]]
    first = client.post("/feedback", json={"prediction_id": ids[0], "label": 1, "source": "t"})
    again = client.post("/feedback", json={"prediction_id": ids[0], "label": 1, "source": "t"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["feedback_id"] == first.json()["feedback_id"]
    other = client.post("/feedback", json={"prediction_id": ids[0], "label": 0, "source": "t"})
    assert other.status_code == 409

    def post_all(part: list[str]) -> list[int]:
        with httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=60) as c:
            return [
                c.post(
                    "/feedback", json={"prediction_id": p, "label": 0, "source": "load"}
                ).status_code
                for p in part
            ]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for part in pool.map(post_all, [ids[i::8] for i in range(8)]) for c in part]
    assert codes.count(201) == 2000
    assert store.counts()["feedback"] == 2001
    assert store.summary_after(0).count == 2001
    assert store.newest_feedback_id() == 2001  # ids increase without gaps under concurrency


@pytest.mark.slow
def test_hot_swap_under_load_and_a_broken_version(served, tmp_path):
    spec, home_dir, registry, _, client = served
    old = registry.champion()
    records = serve_rows(spec, home_dir)[:20]
    raw, feats = (
        PartitionStore(home_dir / "raw_data"),
        PartitionStore(home_dir / "cleaned_features"),
    )
    new = train_small(spec, feats, raw, registry, tmp_path, SERVE_DAY + dt.timedelta(days=2), 1)
    broken = train_small(spec, feats, raw, registry, tmp_path, SERVE_DAY + dt.timedelta(days=3), 2)

    failures, versions, stop = [], [], threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), headers=client.headers, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", json={"records": records})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions.append((time.monotonic(), r.json()["model_version"]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        promoted = time.monotonic()
        registry.promote(new, reason="swap test")
        deadline = promoted + 5
        while time.monotonic() < deadline and client.get("/model").json()["version"] != new:
            time.sleep(0.05)
        switched = time.monotonic() - promoted
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == []
    assert switched < 5, f"took {switched:.1f} s to switch"
    assert {v for _, v in versions} == {old, new}
    assert all(v == new for t, v in versions if t > promoted + switched + 0.2)

    # A champion whose files are corrupt: the app keeps the old one and says so.
    (registry.path(broken) / "weights.pt").write_bytes(b"not a state dict")
    record = {**registry.champion_record(), "version": broken, "promoted_at": "now"}
    registry.champion_file.write_text(json.dumps(record))  # promote() would refuse it
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and client.get("/health").json()["status"] == "ok":
        time.sleep(0.05)
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["serving_version"] == new and health["champion_version"] == broken
    assert "corrupt" in health["load_error"]["error"]
    assert client.post("/predict", json=records[0]).json()["model_version"] == new
