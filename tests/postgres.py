"""A real PostgreSQL for tests: starts the local cluster if it is down, and gives each test a
database of its own (dropped afterwards). `.ci/run` installs PostgreSQL where it is missing."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ROLE, PASSWORD = "flywheel_ci", "flywheel_ci"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def url(self) -> str:
        return (
            f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/"
            f"{self.database}"
        )


def _psql(sql: str) -> str:
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed: {sql}: {proc.stderr}")
    return proc.stdout.strip()


def _cluster_port() -> int:
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    line = out.splitlines()[0].split()  # version cluster port status owner ...
    if line[3] != "online":
        subprocess.run(["pg_ctlcluster", line[0], line[1], "start"], check=True, timeout=120)
    return int(line[2])


def ensure_server() -> int:
    """Starts the local cluster if needed and makes sure the test role exists; returns port."""
    if shutil.which("pg_lsclusters") is None:
        message = "PostgreSQL is not installed (.ci/run installs it: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _cluster_port()
    for _ in range(60):
        try:
            _psql("select 1")
            break
        except RuntimeError:
            time.sleep(0.5)
    if _psql(f"select 1 from pg_roles where rolname = '{ROLE}'") != "1":
        _psql(f"create role {ROLE} login createdb password '{PASSWORD}'")
    else:
        _psql(f"alter role {ROLE} login createdb password '{PASSWORD}'")
    return port


@pytest.fixture
def postgres_db() -> Iterator[Postgres]:
    """A fresh database on the local PostgreSQL server, owned by the test role."""
    port = ensure_server()
    name = f"flywheel_{secrets.token_hex(4)}"
    _psql(f"create database {name} owner {ROLE}")
    try:
        yield Postgres("127.0.0.1", port, ROLE, PASSWORD, name)
    finally:
        _psql(f"drop database if exists {name} with (force)")
