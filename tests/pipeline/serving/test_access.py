"""Who may reach the serving app, over HTTP on loopback: with a token set, everything but
``/health`` needs it; ``/health`` shows no absolute paths; a request whose Host header the
server does not answer to (DNS rebinding from a browser) is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pipeline.model.registry import ModelRegistry
from tests.helpers import build_home, serve_rows, served_app

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_home(tmp_path_factory.mktemp("access"))


@pytest.fixture
def served(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path, TOKEN) as (_, url):
        yield serve_rows(spec, home_dir)[0], url


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/model"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
        ("GET", "/docs/oauth2-redirect"),
        ("POST", "/predict"),
        ("POST", "/feedback"),
        ("GET", "/no-such-route"),
    ],
)
def test_with_a_token_every_route_but_health_needs_it(served, method, path):
    _, url = served
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.request(method, f"{url}{path}", headers=headers)
        assert refused.status_code == 401, (path, headers, refused.text)
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {"detail": "a valid bearer token is required"}


def test_with_the_token_the_routes_answer(served):
    record, url = served
    with httpx.Client(base_url=url, headers=AUTH) as client:
        assert client.get("/model").status_code == 200
        assert client.get("/docs").status_code == 200
        assert "/predict" in client.get("/openapi.json").json()["paths"]
        assert client.post("/predict", json=record).status_code == 200
    assert httpx.get(f"{url}/health").status_code == 200  # no token needed


def test_health_and_model_show_no_absolute_paths(home, tmp_path):
    _, _, built = home
    shutil.copytree(built.root, tmp_path / "models")
    registry = ModelRegistry(tmp_path / "models")
    with served_app(registry, tmp_path, TOKEN) as (_, url):
        model = httpx.get(f"{url}/model", headers=AUTH).text
        registry.champion_file.write_text(json.dumps({"version": "gone-1"}))  # no such version
        deadline = time.monotonic() + 10
        while (health := httpx.get(f"{url}/health").json())["status"] == "ok":
            assert time.monotonic() < deadline, health
            time.sleep(0.05)
    assert health["status"] == "degraded"
    assert health["load_error"]["error"] == "model version 'gone-1' does not exist in models"
    for text in (json.dumps(health), model):
        assert str(tmp_path) not in text and "/tmp/" not in text


# -- allowed hosts ------------------------------------------------------------------------------
def test_a_host_header_the_server_does_not_answer_to_is_refused(home, tmp_path):
    from pipeline.serving.guards import default_allowed_hosts

    spec, home_dir, registry = home
    record = serve_rows(spec, home_dir)[0]
    hosts = default_allowed_hosts("127.0.0.1")
    with served_app(registry, tmp_path, allowed_hosts=hosts) as (_, url):
        port = url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
            for method, path in (("GET", "/health"), ("POST", "/predict"), ("GET", "/model")):
                refused = httpx.request(method, f"{url}{path}", headers={"Host": host}, json=record)
                assert refused.status_code == 400, (host, path)
                assert "Host" in refused.json()["detail"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            assert httpx.get(f"{url}/health", headers={"Host": host}).status_code == 200, host
            answer = httpx.post(f"{url}/predict", headers={"Host": host}, json=record)
            assert answer.status_code == 200, host


@pytest.mark.parametrize(
    ("bind", "hosts"),
    [
        ("127.0.0.1", ["127.0.0.1", "localhost", "::1"]),
        ("localhost", ["127.0.0.1", "localhost", "::1"]),
        ("::1", ["127.0.0.1", "localhost", "::1"]),
        ("127.0.0.5", ["127.0.0.1", "localhost", "::1", "127.0.0.5"]),
        ("0.0.0.0", None),  # every interface: any Host, unless FLYWHEEL_ALLOWED_HOSTS says
        ("10.1.2.3", None),
        ("serving.internal", None),
    ],
)
def test_the_default_allowed_hosts_are_the_loopback_names_when_bound_to_loopback(bind, hosts):
    from pipeline.serving.guards import default_allowed_hosts

    assert default_allowed_hosts(bind) == hosts


# -- /health under a database lock ---------------------------------------------------------------
HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("BEGIN EXCLUSIVE")  # no other writer until this process lets go
print("locked", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


def test_health_answers_from_memory_while_another_process_locks_the_database(served_with_store):
    record, store, url = served_with_store
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, store.engine.url.database],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        # More waiting writers than the app has worker threads (anyio's 40): each /predict
        # waits on the lock inside a thread, so a /health that needed a thread would wait too.
        with ThreadPoolExecutor(48) as pool:
            posts = [
                pool.submit(httpx.post, f"{url}/predict", json=record, headers=AUTH, timeout=60)
                for _ in range(48)
            ]
            time.sleep(1.0)
            assert not any(p.done() for p in posts)  # they are all waiting on the lock
            for route in ("/health", "/model"):
                started = time.monotonic()
                answer = httpx.get(f"{url}{route}", headers=AUTH, timeout=5)
                took = time.monotonic() - started
                assert answer.status_code == 200 and took < 0.5, (route, took)
            holder.stdin.close()  # the lock goes; every waiting prediction is then stored
            assert [p.result().status_code for p in posts] == [200] * 48
    finally:
        holder.kill()
        holder.wait()
    assert store.counts()["predictions"] == 48


@pytest.fixture
def served_with_store(home, tmp_path):
    spec, home_dir, registry = home
    with served_app(registry, tmp_path, TOKEN) as (store, url):
        yield serve_rows(spec, home_dir)[0], store, url
