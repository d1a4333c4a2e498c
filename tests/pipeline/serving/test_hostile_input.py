"""The serving app against input an attacker or an unlucky client sends, over HTTP on loopback:
each is a 4xx naming what is wrong, an unforeseen failure is a JSON 500 with a request id, and
none of them costs the client its keep-alive connection."""

from __future__ import annotations

import http.client
import json
import logging
import sqlite3
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers import build_home, serve_rows, served_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path, TOKEN) as (store, url):
        yield serve_rows(spec, home_dir)[0], store, url


class Connection:
    """One HTTP/1.1 connection (http.client), to see whether the server keeps it open."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.socket = None

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """``(status, headers, parsed JSON body)``; fails if the server closed the connection
        that the previous request used."""
        self.conn.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        response = self.conn.getresponse()
        data = response.read()
        if self.socket is not None:
            assert self.conn.sock is self.socket, "the server closed the keep-alive connection"
        assert self.conn.sock is not None, "the server asked to close the connection"
        self.socket = self.conn.sock
        return response.status, response.headers, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def connection(served):
    conn = Connection(served[2])
    yield conn
    conn.close()


def _still_serving(conn: Connection, record: dict) -> None:
    status, _, body = conn.request("POST", "/predict", json.dumps(record).encode())
    assert status == 200 and 0.0 <= body["score"] <= 1.0


# -- 4: what used to be an unhandled exception ---------------------------------------------------
def test_json_nested_ten_thousand_levels_is_a_422(served, connection):
    record = served[0]
    status, _, body = connection.request("POST", "/predict", b"[" * 10_000 + b"]" * 10_000)
    assert status == 422
    assert body["detail"][0]["loc"] == ["body"] and "nested" in body["detail"][0]["msg"]
    status, _, body = connection.request(
        "POST", "/feedback", b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    )
    assert status == 422 and "nested" in body["detail"][0]["msg"]
    _still_serving(connection, record)


@pytest.mark.parametrize("when", ["0001-01-01T00:00+01:00", "9999-12-31T23:00-14:00"])
def test_a_timestamp_that_overflows_in_utc_is_a_422(served, connection, when):
    record = served[0]
    body = json.dumps({"records": [record, {**record, "event_time": when}]}).encode()
    status, _, answer = connection.request("POST", "/predict", body)
    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", "records", 1, "event_time"]
    _still_serving(connection, record)


def test_a_non_ascii_bearer_token_is_a_401(served, connection):
    record = served[0]
    for token in ("sécret", "s3cret\u00e9", "\u4e2d\u6587"):
        connection.conn.request(
            "POST", "/predict", body=json.dumps(record).encode(),
            headers={"Authorization": f"Bearer {token}".encode()},
        )  # fmt: skip
        response = connection.conn.getresponse()
        assert response.status == 401, response.read()
        response.read()
    _still_serving(connection, record)


def test_an_unforeseen_failure_is_a_json_500_with_a_request_id(served, connection, caplog):
    record, store, _ = served
    with sqlite3.connect(store.engine.url.database) as db:  # the database loses its tables
        db.executescript("DROP TABLE feedback; DROP TABLE predictions;")
    with caplog.at_level(logging.ERROR):
        status, headers, body = connection.request("POST", "/predict", json.dumps(record).encode())
    assert status == 500
    request_id = body["request_id"]
    assert headers["x-request-id"] == request_id and len(request_id) == 32
    assert "request_id" in body and "detail" in body
    assert "predictions" not in json.dumps(body)  # the cause is logged, not told to the client
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].levelno == logging.ERROR and logged[0].exc_info
    assert "no such table" in str(logged[0].exc_info[1])
    status, _, health = connection.request("GET", "/health")  # the same connection goes on
    assert status == 200 and health["status"] == "ok"


def test_every_answer_to_a_bad_request_keeps_the_connection(served, connection):
    record = served[0]
    for path, body in [
        ("/predict", b"{not json"),
        ("/predict", json.dumps({**record, "usage": "lots"}).encode()),
        ("/feedback", json.dumps({"prediction_id": "nope", "label": 1}).encode()),
        ("/feedback", json.dumps({"label": 1}).encode()),
    ]:
        status, _, _ = connection.request("POST", path, body)
        assert 400 <= status < 500
    _still_serving(connection, record)
    assert httpx.get(f"{served[2]}/health").status_code == 200


# -- 2: numbers the model cannot represent ------------------------------------------------------
def _with_usage(record: dict, number_text: str) -> str:
    """``record`` as JSON text with ``usage`` written as ``number_text`` (JSON allows any)."""
    return json.dumps({**record, "usage": "@"}).replace('"@"', number_text)


@pytest.mark.parametrize("number", ["1e42", "-1e308", "1" + "0" * 400, "-1" + "0" * 400, '"1e42"'])
def test_a_number_too_large_for_the_model_is_a_422_naming_the_field(served, connection, number):
    record, store, _ = served
    body = f'{{"records": [{json.dumps(record)}, {_with_usage(record, number)}]}}'
    status, _, answer = connection.request("POST", "/predict", body.encode())
    assert status == 422, answer
    assert answer["detail"][0]["loc"] == ["body", "records", 1, "usage"]
    assert "range" in answer["detail"][0]["msg"]
    assert store.counts()["predictions"] == 0  # refused whole, as any 422, never half-logged
    _still_serving(connection, record)


@pytest.mark.parametrize("number", ["1e6", "-1e6", "0", "1e-300"])
def test_a_large_number_within_range_gets_a_finite_score(served, connection, number):
    record, store, _ = served
    status, _, answer = connection.request("POST", "/predict", _with_usage(record, number).encode())
    assert status == 200, answer
    assert 0.0 <= answer["score"] <= 1.0  # never NaN (JSON would not even carry it)
    assert store.prediction(answer["prediction_id"])["score"] == answer["score"]


# -- 3 and the string cap: text that is not valid Unicode, or too long -------------------------
LONE = "\ud800"  # a lone surrogate: json.loads makes one of "\\ud800", UTF-8 cannot encode it


def _bad_bodies(record: dict, bad: str) -> list[tuple[str, dict, list]]:
    """(path, body, the place the 422 must name) with ``bad`` in each kind of place."""
    return [
        ("/predict", {**record, "plan": bad}, ["body", "plan"]),
        ("/predict", {"records": [record, {**record, "region": bad}]},
         ["body", "records", 1, "region"]),
        ("/predict", {**record, "note": {"deeper": [1, bad]}}, ["body", "note", "deeper", 1]),
        ("/feedback", {"prediction_id": "abc", "label": 1, "source": bad}, ["body", "source"]),
        ("/feedback", {"prediction_id": bad, "label": 1}, ["body", "prediction_id"]),
    ]  # fmt: skip


def test_a_string_that_is_not_valid_unicode_is_a_422_at_the_door(served, connection):
    record, store, _ = served
    for path, body, loc in _bad_bodies(record, LONE):
        status, _, answer = connection.request("POST", path, json.dumps(body).encode())
        assert status == 422, (path, answer)
        assert answer["detail"][0]["loc"] == loc
        assert "not valid Unicode" in answer["detail"][0]["msg"]
    key = json.dumps({**record, f"k{LONE}": 1}).encode()  # in a key, too
    status, _, answer = connection.request("POST", "/predict", key)
    assert status == 422 and "not valid Unicode" in answer["detail"][0]["msg"]
    assert store.counts() == {"predictions": 0, "feedback": 0}
    _still_serving(connection, record)


def test_a_string_over_the_cap_is_a_422(served, connection):
    record, store, _ = served
    for text in ("x" * 1025, "\u00e9" * 513):  # 1,025 and 1,026 bytes of UTF-8
        for path, body, loc in _bad_bodies(record, text):
            status, _, answer = connection.request("POST", path, json.dumps(body).encode())
            assert status == 422, (path, answer)
            assert answer["detail"][0]["loc"] == loc
            assert "longer than 1024 bytes" in answer["detail"][0]["msg"]
    assert store.counts() == {"predictions": 0, "feedback": 0}
    status, _, answer = connection.request(
        "POST", "/predict", json.dumps({**record, "plan": "\u00e9" * 512}).encode()
    )
    assert status == 200  # exactly 1,024 bytes is allowed
    assert store.prediction(answer["prediction_id"])["record"]["plan"] == "\u00e9" * 512


def test_the_string_cap_is_a_setting(home, tmp_path):
    spec, home_dir, registry = home
    record = serve_rows(spec, home_dir)[0]
    with served_app(registry, tmp_path, TOKEN, max_string_bytes=32) as (_, url):
        with httpx.Client(base_url=url, headers=AUTH) as client:
            refused = client.post("/predict", json={**record, "plan": "x" * 33})
            assert refused.status_code == 422
            assert "longer than 32 bytes" in refused.json()["detail"][0]["msg"]
            assert client.post("/predict", json={**record, "plan": "x" * 32}).status_code == 200
