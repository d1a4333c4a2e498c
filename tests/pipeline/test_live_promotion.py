"""Promotion on live traffic with real models, the real serving app on 127.0.0.1 and simulated
traffic answered with the true outcome (``flywheel simulate``'s code): a candidate promoted or
rejected by its live figures, two candidates in a row, a forced promotion rolled back on
probation, a candidate that cannot load, and a crash between a pointer and its record.

The models: ``good`` (the churn champion of tests/helpers.py) and ``bad`` (trained on shuffled
labels); each test changes a copy of their registry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from pipeline.data.storage import PartitionStore
from pipeline.evaluation import evaluate_version
from pipeline.feedback.schema import predictions
from pipeline.feedback.simulate import simulate
from pipeline.gate import GatePolicy
from pipeline.live_promotion import evaluate_shadow
from pipeline.model.candidate import CANDIDATE, PROBATION
from pipeline.promotion import deploy
from pipeline.shadow import ShadowPolicy
from tests.helpers import (
    SERVE_DAY,
    build_shadow_home,
    copy_registry,
    served_app,
    traffic_rows,
    train_small,
)
from tests.servers import wait_until

POLICY = GatePolicy(resamples=500, min_holdout_rows=100)  # the churn holdout: 3 x 120 rows
SHADOW = ShadowPolicy()  # 200 labels, 7 days, probation 200
TRAFFIC = 320  # predictions with feedback: above the 200 labels either rule waits for


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_shadow_home(tmp_path_factory.mktemp("shadow"))


@pytest.fixture
def setup(models, tmp_path):
    spec, home, registry, versions = models
    return spec, home, copy_registry(registry, tmp_path), versions


def _shadow_of(client: httpx.Client) -> dict:
    return client.get("/health").json()["shadow"]


def _send(url: str, spec, home: Path, seed: int = 0) -> dict:
    return simulate(url, traffic_rows(home), spec, TRAFFIC, batch_size=40, seed=seed)


class Hammer:
    """Single-record /predict in a loop on its own thread; every status code is kept."""

    def __init__(self, url: str, record: dict):
        self.url, self.record = url, record
        self.codes: list[int] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                r = client.post("/predict", json=self.record)
                self.codes.append(r.status_code)
                if r.status_code == 200:
                    self.versions.append(r.json()["model_version"])

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_clearly_better_candidate_is_promoted_and_served_without_a_failed_request(
    setup, tmp_path
):
    spec, home, registry, v = setup
    registry.promote(v["bad"], reason="test: the weak champion")
    registry.set_candidate(v["good"], v["bad"], "test: passed the offline gate")
    with served_app(registry, tmp_path) as (store, url), httpx.Client(base_url=url) as client:
        wait_until(lambda: _shadow_of(client)["version"] == v["good"], 10, "the shadow", 0.1)
        sent = _send(url, spec, home)
        assert sent["model_versions"] == [v["bad"]]  # the champion alone answers
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(predictions.c.model_version, predictions.c.score,
                                          predictions.c.shadow_version,
                                          predictions.c.shadow_score)).all()  # fmt: skip
        assert len(rows) == TRAFFIC
        assert {(r.model_version, r.shadow_version) for r in rows} == {(v["bad"], v["good"])}
        assert all(r.shadow_score is not None and r.shadow_score != r.score for r in rows)
        with Hammer(url, traffic_rows(home).pipe(_first_record, spec)) as hammer:
            outcome = evaluate_shadow(registry, store, POLICY, SHADOW)
            wait_until(lambda: client.get("/model").json()["version"] == v["good"], 10,
                       "the app to serve the promoted candidate", 0.1)  # fmt: skip
            wait_until(lambda: _shadow_of(client)["version"] == v["bad"], 10, "probation", 0.1)
        assert outcome.action == "promote" and outcome.champion == v["good"], outcome.reason
        assert "significantly better on ROC-AUC" in outcome.reason
        assert hammer.codes and set(hammer.codes) == {200}, "a request failed during the swap"
        assert hammer.versions[-1] == v["good"]
        assert _shadow_of(client)["role"] == PROBATION
    record = registry.history()[-2]
    assert record["action"] == "shadow_promote" and record["version"] == v["good"]
    assert record["labels"] >= SHADOW.shadow_min_labels and record["comparison"]["ci_low"] > 0
    probation = registry.shadow_record()
    assert probation["role"] == PROBATION and probation["version"] == v["bad"]
    assert probation["champion"] == v["good"]


def _first_record(frame, spec) -> dict:
    from pipeline.serving.features import records_for_api

    return records_for_api(frame.iloc[:1], spec)[0]


def test_a_clearly_worse_candidate_is_rejected_and_the_champion_never_changes(setup, tmp_path):
    spec, home, registry, v = setup
    registry.set_candidate(v["bad"], v["good"], "test: passed the offline gate")
    champion_json = registry.champion_file.read_bytes()
    with served_app(registry, tmp_path) as (store, url), httpx.Client(base_url=url) as client:
        wait_until(lambda: _shadow_of(client)["version"] == v["bad"], 10, "the shadow", 0.1)
        few = simulate(url, traffic_rows(home), spec, 150, batch_size=50)
        waiting = evaluate_shadow(registry, store, POLICY, SHADOW)
        assert waiting.action == "wait" and "150 of 200" in waiting.reason
        sent = _send(url, spec, home, seed=1)
        outcome = evaluate_shadow(registry, store, POLICY, SHADOW)
        assert outcome.action == "reject", outcome.reason
        assert "significantly worse" in outcome.reason
        wait_until(lambda: _shadow_of(client)["version"] is None, 10, "the shadow to end", 0.1)
        assert client.get("/model").json()["version"] == v["good"]
    assert few["model_versions"] == sent["model_versions"] == [v["good"]]
    assert registry.champion_file.read_bytes() == champion_json  # never rewritten
    assert registry.shadow_record() is None
    last = registry.history()[-1]
    assert last["action"] == "shadow_reject" and last["version"] == v["bad"]
    assert last["labels"] == 150 + TRAFFIC and last["comparison"]["ci_high"] < 0


def test_two_candidates_in_a_row_the_second_replaces_the_first(models, setup, tmp_path):
    spec, home, registry, v = setup
    feats = PartitionStore(home / "cleaned_features")
    raw = PartitionStore(home / "raw_data")
    good2 = train_small(spec, feats, raw, registry, tmp_path / "scratch", SERVE_DAY, seed=1)
    # the first model is always promoted directly, in shadow mode too
    registry.champion_file.unlink()
    first = deploy(registry, evaluate_version(feats, registry, v["good"]).report, POLICY,
                   promotion="shadow")  # fmt: skip
    assert first.promoted and first.candidate is None and registry.shadow_record() is None
    registry.promote(v["bad"], reason="test: the weak champion")
    with served_app(registry, tmp_path) as (_, url), httpx.Client(base_url=url) as client:
        for version in (v["good"], good2):  # both clearly better than the weak champion
            report = evaluate_version(feats, registry, version).report
            done = deploy(registry, report, POLICY, promotion="shadow")
            assert done.candidate == version and not done.promoted, done.reason
            assert done.champion == v["bad"]
            wait_until(lambda: _shadow_of(client)["version"] == version, 10, "the shadow", 0.1)
        assert client.get("/model").json()["version"] == v["bad"]
    log = [r for r in registry.history() if r["action"] == CANDIDATE]
    assert [r["version"] for r in log] == [v["good"], good2]
    assert log[1]["replaced"]["version"] == v["good"]
    assert f"replaces candidate {v['good']}" in log[1]["reason"]
    assert registry.candidate() == good2


def test_a_forced_worse_champion_is_rolled_back_on_probation(setup, tmp_path):
    spec, home, registry, v = setup
    feats = PartitionStore(home / "cleaned_features")
    report = evaluate_version(feats, registry, v["bad"]).report
    forced = deploy(registry, report, POLICY, force=True, promotion="shadow")
    assert forced.promoted and forced.champion == v["bad"]  # forced: direct, on probation
    probation = registry.shadow_record()
    assert probation == {**probation, "role": PROBATION, "version": v["good"],
                         "champion": v["bad"]}  # fmt: skip
    with served_app(registry, tmp_path) as (store, url), httpx.Client(base_url=url) as client:
        wait_until(lambda: _shadow_of(client)["version"] == v["good"], 10, "probation", 0.1)
        assert _send(url, spec, home)["model_versions"] == [v["bad"]]
        outcome = evaluate_shadow(registry, store, POLICY, SHADOW)
        assert outcome.action == "rollback" and outcome.champion == v["good"], outcome.reason
        wait_until(lambda: client.get("/model").json()["version"] == v["good"], 10,
                   "the app to serve the previous champion again", 0.1)  # fmt: skip
        wait_until(lambda: _shadow_of(client)["version"] is None, 10, "the shadow to end", 0.1)
    rollback = next(r for r in reversed(registry.history()) if r["action"] == "rollback")
    assert rollback["reason"] == "probation" and rollback["version"] == v["good"]
    assert rollback["rolled_back"] == v["bad"] and rollback["comparison"]["ci_high"] < 0
    assert "significantly worse" in rollback["explanation"]
    assert registry.history()[-1]["action"] == "probation_failed"
    assert registry.champion_record()["reason"] == "probation"


def test_a_candidate_that_cannot_load_leaves_serving_as_it_is(setup, tmp_path):
    spec, home, registry, v = setup
    registry.set_candidate(v["bad"], v["good"], "test")
    weights = registry.path(v["bad"]) / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])  # corrupt after it became the candidate
    with served_app(registry, tmp_path) as (store, url), httpx.Client(base_url=url) as client:
        health = wait_until(lambda: (h := client.get("/health").json())["shadow"]["load_error"]
                            and h, 10, "the shadow's load error", 0.1)  # fmt: skip
        assert health["status"] == "degraded" and health["serving_version"] == v["good"]
        assert health["shadow"]["load_error"]["version"] == v["bad"]
        assert "corrupt" in health["shadow"]["load_error"]["error"]
        answer = client.post("/predict", json=_first_record(traffic_rows(home), spec))
        assert answer.status_code == 200 and answer.json()["model_version"] == v["good"]
        logged = store.prediction(answer.json()["prediction_id"])
        assert logged["shadow_version"] is None and logged["shadow_score"] is None


CRASH = """
import json, os, sys
from pipeline.feedback.store import FeedbackStore
from pipeline.gate import GatePolicy
from pipeline.live_promotion import evaluate_shadow
from pipeline.model import registry as reg
root, url, point = sys.argv[1:]
if point == "after_pointer":  # champion.json written, its record not yet appended
    def crash(self, record):
        if record.get("action") == "shadow_promote":
            os._exit(3)
    reg.ModelRegistry.append_history = crash
else:  # the decision taken, champion.json not yet replaced
    def crash(path, record, if_match=None):
        os._exit(3)
    reg.write_pointer = crash
evaluate_shadow(reg.ModelRegistry(root), FeedbackStore(url), GatePolicy(resamples=200))
"""


@pytest.mark.parametrize("point", ["after_pointer", "before_pointer"])
def test_a_crash_between_a_pointer_and_its_record_leaves_a_consistent_state(setup, tmp_path, point):
    spec, home, registry, v = setup
    registry.promote(v["bad"], reason="test: the weak champion")
    registry.set_candidate(v["good"], v["bad"], "test")
    with served_app(registry, tmp_path) as (store, url):
        _send(url, spec, home)
        before = registry.history()
        proc = subprocess.run([sys.executable, "-c", CRASH, str(registry.root), store.url, point],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        champion = registry.champion()
        registry.load(champion)  # the champion loads, whichever it is
        with httpx.Client(base_url=url) as client:
            wait_until(lambda: client.get("/model").json()["version"] == champion, 10,
                       "the app to serve the champion the pointer names", 0.1)  # fmt: skip
        after = registry.history()
        assert after == before  # the record is missing; none tells of what did not happen
        # the pointers are what the record would have said, or unchanged
        assert champion == (v["good"] if point == "after_pointer" else v["bad"])
        assert registry.candidate() == v["good"]
        assert not list(registry.root.glob(".*.tmp"))
        # the next evaluation finds the state the pointers hold and finishes it
        again = evaluate_shadow(registry, store, POLICY, SHADOW)
    if point == "after_pointer":
        assert again.action == "recovered" and "already the champion" in again.reason
    else:
        assert again.action == "promote"
    assert registry.champion() == v["good"]
    shadow = registry.shadow_record()
    assert shadow["role"] == PROBATION and shadow["version"] == v["bad"]
    assert json.loads(registry.champion_file.read_text())["version"] == v["good"]
