"""The champion watcher under bad luck, seen through the real app's ``/health`` over HTTP: a
broken ``champion.json``, a version that cannot be loaded, an error nobody foresaw, and a watcher
thread that has died or hangs. In each case hot swap must go on (or ``/health`` must say it
cannot), and the model that serves keeps serving."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from pipeline.data.storage import PartitionStore
from pipeline.model.registry import ModelRegistry, _sha256
from tests.helpers import SERVE_DAY, build_home, served_app, train_small

pytestmark = pytest.mark.slow  # the module's home trains two small models


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A home with a champion (``first``) and a second, unpromoted version (``second``)."""
    root = tmp_path_factory.mktemp("watcher-http")
    spec, home, registry = build_home(root)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    second = train_small(spec, feats, raw, registry, root / "scratch2", SERVE_DAY, seed=1)
    return registry, registry.champion(), second


def _copy(built, tmp_path: Path, cls: type[ModelRegistry] = ModelRegistry) -> ModelRegistry:
    source = built[0]
    shutil.copytree(source.root, tmp_path / "models")
    return cls(tmp_path / "models")


def _wait_for(client: httpx.Client, done, timeout: float = 10.0) -> dict:
    """Polls ``/health`` until ``done(body)`` holds; returns that body (or fails)."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get("/health").json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never reached the wanted state: {body}")
        time.sleep(0.05)


def _rewrite_pointer(registry: ModelRegistry, text: str) -> None:
    """Replaces champion.json with ``text`` (by rename, as a careful writer would; the size or
    the modification time changes, so the watcher sees a new file)."""
    tmp = registry.champion_file.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(registry.champion_file)


@pytest.mark.parametrize(
    "pointer",
    ['{"version": "2025', '{"version": 5}', "[]", "{}", '{"version": "../escape"}'],
    ids=["half-written", "number", "list", "no-version", "path"],
)
def test_an_invalid_champion_json_is_reported_and_watching_goes_on(built, tmp_path, pointer):
    _, first, second = built
    registry = _copy(built, tmp_path)
    with served_app(registry, tmp_path) as (_, url), httpx.Client(base_url=url) as client:
        assert client.get("/health").json()["serving_version"] == first
        _rewrite_pointer(registry, pointer)
        health = _wait_for(client, lambda h: h["status"] == "degraded")
        assert health["serving_version"] == first  # the old champion keeps serving
        assert "champion.json" in health["load_error"]["error"]
        assert str(tmp_path) not in json.dumps(health)  # no absolute paths in /health
        registry.promote(second, reason="after a bad pointer")
        health = _wait_for(client, lambda h: h["serving_version"] == second)
        assert health["status"] == "ok" and health["load_error"] is None


class _Payload:
    """Unpickled, this would create ``marker``: proof that a weights file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_object_as_weights_is_refused_and_reported(built, tmp_path):
    _, first, second = built
    registry = _copy(built, tmp_path)
    marker = tmp_path / "code-ran"
    folder = registry.path(second)
    torch.save({"weights": _Payload(marker)}, folder / "weights.pt")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["weights.pt"] = _sha256(folder / "weights.pt")  # re-hashed: it verifies
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with served_app(registry, tmp_path) as (_, url), httpx.Client(base_url=url) as client:
        registry.promote(second, reason="a poisoned version")
        health = _wait_for(client, lambda h: h["status"] == "degraded")
        assert (health["serving_version"], health["champion_version"]) == (first, second)
        assert health["load_error"]["version"] == second
        assert "cannot be loaded" in health["load_error"]["error"]
        assert not marker.exists()
        registry.promote(first, reason="back", forced=True, action="rollback")
        assert _wait_for(client, lambda h: h["status"] == "ok")["serving_version"] == first


class _Unlucky(ModelRegistry):
    """A registry (the watcher's; the test writes through a plain one) whose reads of
    champion.json fail as the test says: ``mode`` is ``None``
    (read normally), ``"raise"`` (an error nobody foresaw), ``"hang"`` (a read that never
    returns until ``release`` is set) or ``"die"`` (an exception that is not an ``Exception``)."""

    mode: str | None = None
    release = threading.Event()

    def champion_record(self):
        if self.mode == "raise":
            raise RuntimeError("the disk is on fire")
        if self.mode == "hang":
            self.release.wait(30)
        if self.mode == "die":
            raise SystemExit("the thread is gone")
        return super().champion_record()


def test_an_unexpected_error_is_counted_and_the_watcher_goes_on(built, tmp_path):
    _, first, second = built
    registry = _copy(built, tmp_path, _Unlucky)
    with served_app(registry, tmp_path) as (_, url), httpx.Client(base_url=url) as client:
        registry.mode = "raise"
        ModelRegistry(registry.root).promote(second, reason="while the disk burns")
        health = _wait_for(client, lambda h: h["watcher"]["errors"] >= 2)
        assert health["status"] == "degraded" and health["serving_version"] == first
        assert "the disk is on fire" in health["watcher"]["last_error"]["error"]
        assert health["watcher"]["alive"] is True
        registry.mode = None
        health = _wait_for(client, lambda h: h["serving_version"] == second)
        assert health["status"] == "ok" and health["watcher"]["errors"] >= 2


@pytest.mark.parametrize("mode", ["hang", "die"])
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # "die"
def test_health_is_degraded_when_the_watcher_has_stopped_checking(built, tmp_path, mode):
    _, first, second = built
    registry = _copy(built, tmp_path, _Unlucky)
    registry.release = threading.Event()
    with served_app(registry, tmp_path) as (_, url), httpx.Client(base_url=url) as client:
        try:
            assert client.get("/health").json()["status"] == "ok"
            registry.mode = mode
            ModelRegistry(registry.root).promote(second, reason="nobody will see this one")
            health = _wait_for(client, lambda h: h["status"] == "degraded")
            assert health["serving_version"] == first
            assert health["watcher"]["alive"] is (mode == "hang")
            if mode == "hang":
                assert health["watcher"]["seconds_since_check"] > 1.0
            assert client.post("/predict", json={}).status_code == 422  # still answering
        finally:
            registry.release.set()
