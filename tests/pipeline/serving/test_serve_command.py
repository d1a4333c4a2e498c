"""``flywheel serve`` as a user starts it: the real command in its own process, on loopback,
with its settings from the environment. No champion is needed for what is checked here (the
app answers ``no_model``), so nothing is trained."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

PROJECT = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def flywheel_serve(home: Path, *args: str, env: dict[str, str] | None = None):
    """Runs ``python -m pipeline.cli --home HOME serve --port P ARGS`` (this tree's code, as the
    console script runs it) and yields its URL once it answers; stops it on exit."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "--home", str(home), "serve",
         "--port", str(port), *args],
        cwd=PROJECT, env={**clean, **(env or {})}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"flywheel serve exited: {proc.stdout.read()}")
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("flywheel serve did not answer within 60 s") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("env", "limit"), [({}, 1024), ({"FLYWHEEL_MAX_STRING_BYTES": "16"}, 16)])
def test_the_string_cap_comes_from_the_environment(tmp_path, env, limit):
    with flywheel_serve(tmp_path / "home", env=env) as url:
        refused = httpx.post(f"{url}/predict", json={"plan": "x" * (limit + 1)})
        assert refused.status_code == 422
        assert f"longer than {limit} bytes" in refused.json()["detail"][0]["msg"]
        fits = httpx.post(f"{url}/predict", json={"plan": "x" * limit})
        assert fits.status_code == 503  # through the door; no champion to answer it


def test_a_string_cap_that_is_no_positive_number_is_refused_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--home", str(tmp_path), "serve"],
        cwd=PROJECT, env={**os.environ, "FLYWHEEL_MAX_STRING_BYTES": "lots"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--max-string-bytes: must be a whole number of at least 1, not 'lots'" in proc.stderr


@pytest.mark.parametrize(
    ("env", "answered", "refused"),
    [
        ({}, ["127.0.0.1", "localhost", "[::1]"], ["evil.example", "rebind.attacker.test"]),
        ({"FLYWHEEL_ALLOWED_HOSTS": "api.example.com, *.internal"},
         ["api.example.com", "serving.internal"], ["localhost", "evil.example"]),
        ({"FLYWHEEL_ALLOWED_HOSTS": "*"}, ["evil.example", "localhost"], []),
    ],
    ids=["default-loopback", "listed", "any"],
)  # fmt: skip
def test_allowed_hosts_default_to_loopback_and_come_from_the_environment(
    tmp_path, env, answered, refused
):
    with flywheel_serve(tmp_path / "home", env=env) as url:
        port = url.rsplit(":", 1)[1]
        for host in answered:
            health = httpx.get(f"{url}/health", headers={"Host": f"{host}:{port}"})
            assert health.status_code == 503 and health.json()["status"] == "no_model", host
        for host in refused:
            health = httpx.get(f"{url}/health", headers={"Host": f"{host}:{port}"})
            assert health.status_code == 400, host
