"""The scorer thread: rounds that share a forward pass and a commit, chunks of large requests,
errors that stay with their request, a failed insert that fails its whole round, and a drain
on shutdown; on a real SQLite store, and over HTTP against the real app."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from pipeline.feedback.store import FeedbackStore
from pipeline.home import FlywheelHome
from pipeline.serving.features import RecordError
from pipeline.serving.scorer import PredictionLogError, Scorer, ScorerClosed, Shadow
from pipeline.serving.served import load_served
from tests.helpers import build_home, serve_rows, served_app

POISON = "poison-carrier"


class CountingStore(FeedbackStore):
    """The real store, noting the size of every transaction of predictions."""

    def __init__(self, url: str):
        super().__init__(url)
        self.commits: list[int] = []

    def insert_prediction_rows(self, rows):
        super().insert_prediction_rows(rows)
        self.commits.append(len(rows))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    spec, home_dir, registry = build_home(tmp_path_factory.mktemp("scorer"))
    model = load_served(registry, registry.champion_record())
    return spec, registry, model, serve_rows(spec, home_dir)


@pytest.fixture
def store(tmp_path):
    store = CountingStore(FlywheelHome.at(tmp_path).feedback_url)
    store.upgrade()
    yield store
    store.close()


def poison_inserts(store: FeedbackStore) -> None:
    """A trigger that makes SQLite refuse the insert of any record naming POISON."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON predictions"
            f" WHEN NEW.record LIKE '%{POISON}%' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )


def stored(store: FeedbackStore, pid: str) -> dict:
    row = store.prediction(pid)
    assert row is not None, f"prediction {pid} was answered but not stored"
    return row


def test_a_round_shares_one_forward_pass_and_one_commit_and_keeps_each_requests_order(home, store):
    _, _, model, rows = home
    sizes = [1, 1, 3, 50, 1, 7]
    batches, at = [], 0
    for n in sizes:
        batches.append(rows[at : at + n])
        at += n
    scorer = Scorer(store)
    futures = [scorer.submit(model, records) for records in batches]  # queued before it starts
    scorer.start()
    results = [f.result(timeout=30) for f in futures]
    scorer.close()
    assert scorer.rounds == 1 and store.commits == [sum(sizes)]
    ids = [pid for r in results for pid in r.ids]
    assert len(set(ids)) == len(ids) == sum(sizes)
    for records, result in zip(batches, results, strict=True):
        alone = model.scores(records)  # the same scores as the request scored on its own
        assert np.allclose(result.scores, alone, atol=1e-6)
        for record, pid, score in zip(records, result.ids, result.scores, strict=True):
            row = stored(store, pid)
            assert row["record"] == record and row["score"] == pytest.approx(score, abs=1e-12)
            assert row["decision"] == int(score >= model.threshold)
    assert store.counts()["predictions"] == sum(sizes)


def test_a_large_request_goes_in_chunks_between_the_small_ones(home, store):
    _, _, model, rows = home
    scorer = Scorer(store, chunk_rows=16)
    large = scorer.submit(model, rows[:40])  # 3 chunks: 16, 16, 8
    small = [scorer.submit(model, rows[40 + i : 41 + i]) for i in range(4)]
    scorer.start()
    big = large.result(timeout=30)
    scorer.close()
    # Round 1: the small requests and the first chunk; their commit does not wait for the rest.
    assert scorer.rounds == 3 and store.commits == [4, 40]
    assert all(f.result().ids for f in small)
    assert np.allclose(big.scores, model.scores(rows[:40]), atol=1e-6)
    assert [stored(store, pid)["record"] for pid in big.ids] == rows[:40]


def test_a_bad_record_fails_its_own_request_only_and_names_its_index(home, store):
    _, _, model, rows = home
    missing = {k: v for k, v in rows[1].items() if k != "usage"}
    large = [*rows[:20], {**rows[20], "tenure": "lots"}, *rows[21:30]]
    scorer = Scorer(store, chunk_rows=16)
    good = scorer.submit(model, rows[:2])
    bad = scorer.submit(model, [rows[0], missing])
    bad_large = scorer.submit(model, large)  # the bad record is in its second chunk
    also_good = scorer.submit(model, rows[5:6])
    scorer.start()
    with pytest.raises(RecordError) as err:
        bad.result(timeout=30)
    assert (err.value.index, err.value.field) == (1, "usage")
    with pytest.raises(RecordError) as err:
        bad_large.result(timeout=30)
    assert (err.value.index, err.value.field) == (20, "tenure")
    assert len(good.result().ids) == 2 and len(also_good.result().ids) == 1
    scorer.close()
    assert store.counts()["predictions"] == 3  # nothing of the failed requests, first chunk too


def test_a_failed_insert_fails_every_request_of_its_round_and_stores_none(home, store):
    _, _, model, rows = home
    poison_inserts(store)
    scorer = Scorer(store)
    futures = [scorer.submit(model, rows[i : i + 2]) for i in range(0, 6, 2)]
    futures.append(scorer.submit(model, [{**rows[9], "region": POISON}]))
    scorer.start()
    for future in futures:
        with pytest.raises(PredictionLogError, match="poisoned"):
            future.result(timeout=30)
    assert store.counts()["predictions"] == 0  # one transaction: the innocent rows went too
    later = scorer.submit(model, rows[:3]).result(timeout=30)  # the thread lives on
    scorer.close()
    assert len(later.ids) == 3 and store.counts()["predictions"] == 3


def test_close_stores_everything_queued_then_refuses(home, store):
    _, _, model, rows = home
    scorer = Scorer(store, chunk_rows=16)
    futures = [scorer.submit(model, rows[i % 20 : i % 20 + 1 + i % 3]) for i in range(60)]
    futures.append(scorer.submit(model, rows[:100]))
    assert len(rows) >= 100
    cancelled = scorer.submit(model, rows[:5])
    assert cancelled.cancel()  # its client went away before its round: scored for no one
    scorer.start()
    scorer.close()  # at once: the queue is drained first
    assert all(f.done() for f in futures)
    answered = [pid for f in futures for pid in f.result().ids]
    assert store.counts()["predictions"] == len(answered) == sum(1 + i % 3 for i in range(60)) + 100
    with pytest.raises(ScorerClosed):
        scorer.submit(model, rows[:1])


# -- over HTTP ---------------------------------------------------------------------------------
def test_over_http_a_failed_insert_answers_500_to_each_request_and_the_rest_are_stored(
    home, tmp_path
):
    _, registry, _, rows = home
    with served_app(registry, tmp_path) as (store, url):
        poison_inserts(store)
        poisoned = [{**r, "region": POISON} for r in rows[:16]]
        with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
            failed = list(pool.map(lambda r: client.post("/predict", json=r), poisoned))
            assert {r.status_code for r in failed} == {500}
            assert all(r.json()["request_id"] for r in failed)
            answers = list(pool.map(lambda r: client.post("/predict", json=r), rows[:64]))
            many = (rows * 3)[:300]  # a day has about 120 rows
            batch = client.post("/predict", json={"records": many})
        assert {r.status_code for r in answers} == {200} and batch.status_code == 200
        ids = [r.json()["prediction_id"] for r in answers]
        ids += [p["prediction_id"] for p in batch.json()["predictions"]]
        assert len(set(ids)) == 364 and store.counts()["predictions"] == 364
        for record, answer in zip(rows[:64], answers, strict=True):
            row = stored(store, answer.json()["prediction_id"])
            assert row["record"] == record and row["score"] == answer.json()["score"]


def test_over_http_every_answer_given_before_a_shutdown_is_stored(home, tmp_path):
    _, registry, _, rows = home
    answered: list[str] = []
    stop = threading.Event()

    def client_loop(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                try:
                    r = client.post("/predict", json=rows[i % len(rows)])
                except httpx.HTTPError:
                    return  # the server has gone
                if r.status_code == 200:
                    answered.append(r.json()["prediction_id"])

    with served_app(registry, tmp_path) as (store, url):
        threads = [threading.Thread(target=client_loop, args=(url,)) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Leaving the block stops the server (uvicorn's graceful shutdown, then the lifespan's
        # drain) with requests in flight.
    stop.set()
    for t in threads:
        t.join(timeout=30)
    reopened = FeedbackStore(store.url)
    try:
        with reopened.engine.connect() as conn:
            stored_ids = set(conn.execute(sa.text("SELECT id FROM predictions")).scalars())
    finally:
        reopened.close()
    assert len(answered) >= 200 and set(answered) <= stored_ids


def test_over_http_the_per_request_path_answers_what_the_scorer_answers(home, tmp_path):
    _, registry, _, rows = home
    answers = []
    for i, settings in enumerate([{}, {"micro_batch": False, "engine": "torch"}]):
        with served_app(registry, tmp_path / str(i), **settings) as (store, url):
            with httpx.Client(base_url=url, timeout=30) as client:
                one = client.post("/predict", json=rows[0]).json()
                many = client.post("/predict", json={"records": rows[:200]}).json()
            assert store.counts()["predictions"] == 1 + len(rows[:200])
        answers.append([one["score"], *(p["score"] for p in many["predictions"])])
    assert np.abs(np.array(answers[0]) - np.array(answers[1])).max() < 1e-6


class _Counter:
    shadow_failures = 0


class _Broken:
    """A model in shadow that cannot score anything."""

    version = "broken-shadow"

    def scores(self, records):
        raise RuntimeError("no weights")


def test_the_shadow_is_logged_beside_the_answer_and_its_failure_fails_no_request(home, store):
    _, _, model, rows = home
    scorer = Scorer(store)
    scorer.start()
    try:
        shadow = Shadow(model, _Counter())  # the champion's own weights under its own name
        ok = scorer.submit(model, rows[:3], shadow).result(30)
        counter = _Counter()
        broken = scorer.submit(model, rows[3:5], Shadow(_Broken(), counter)).result(30)
    finally:
        scorer.close()
    for pid, score in zip(ok.ids, ok.scores, strict=True):
        row = stored(store, pid)
        assert row["shadow_version"] == model.version
        assert row["shadow_score"] == pytest.approx(float(score), abs=1e-6)
    assert len(broken.ids) == 2 and counter.shadow_failures == 1
    assert all(stored(store, pid)["shadow_score"] is None for pid in broken.ids)
