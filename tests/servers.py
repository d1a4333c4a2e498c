"""Real Dagster servers for integration tests: a code server, ``dagster-webserver`` and
``dagster-daemon`` on 127.0.0.1, with DAGSTER_HOME and FLYWHEEL_HOME under a temporary folder.

Use the context manager, or the ``dagster_stack_factory`` fixture (import it into a conftest.py
or a test module)::

    with dagster_stack(tmp_path, env={"FLYWHEEL_START_DATE": "2026-01-01"}) as stack:
        stack.graphql("{ version }")
        run_id = stack.client.submit_job_execution("data_job", ...)
        stack.wait_for_run(run_id)

The webserver and the daemon talk to one code server (as in a deployment), so the project is
imported once, not once per process. Every process runs in its own session and is ended with its
children (the runs it launched) when the stack stops. Their output goes to ``<tmp>/logs``; a
failing wait prints the end of each log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from dagster import DagsterInstance
from dagster_graphql import DagsterGraphQLClient

PROJECT_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCATION = "flywheel"

# The stack's defaults; the caller's env overrides them. The nightly schedule stays off unless a
# test turns it on (FLYWHEEL_RETRAIN_DEFAULT_STATUS=running, or startSchedule through GraphQL).
BASE_ENV = {
    "FLYWHEEL_RETRAIN_DEFAULT_STATUS": "stopped",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "PYTHONUNBUFFERED": "1",
}

DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
"""

RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0, logs=None
) -> Any:
    """Calls ``check`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, OSError) as err:
            last_error = err
        time.sleep(interval)
    tail = logs() if logs else ""
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} ({last_error})\n{tail}")


@dataclass
class DagsterStack:
    """A running code server, webserver and daemon; ``stop()`` ends them."""

    url: str
    port: int
    dagster_home: Path
    flywheel_home: Path
    log_dir: Path
    env: dict[str, str]
    client: DagsterGraphQLClient
    workspace: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def spawn(self, name: str, *args: str) -> None:
        """Starts ``args`` (a command of the environment's bin folder) as process ``name``, in
        a session of its own, its output appended to ``<log_dir>/<name>.log``."""
        log = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start_daemon(self) -> None:
        self.spawn("daemon", "dagster-daemon", "run", "-w", str(self.workspace))

    def stop_process(self, name: str) -> None:
        """Ends one process and its children (SIGTERM, then SIGKILL after 10 s)."""
        proc = self.processes.pop(name)
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=10)

    @property
    def graphql_client(self) -> DagsterGraphQLClient:
        return self.client

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any GraphQL query; errors raise with the server's message."""
        response = requests.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": dict(variables or {})},
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def logs(self, lines: int = 40) -> str:
        """The last lines of every process's log, for failure messages."""
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.graphql(
            """query($id: ID!) { runOrError(runId: $id) { __typename
                 ... on Run { runId status jobName tags { key value } } } }""",
            {"id": run_id},
        )
        return data["runOrError"]

    def runs(self, tags: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Runs (newest first), filtered by tags."""
        data = self.graphql(
            """query($filter: RunsFilter) { runsOrError(filter: $filter) { __typename
                 ... on Runs { results { runId status jobName tags { key value } } } } }""",
            {"filter": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )
        return data["runsOrError"]["results"]

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Waits until the run has ended (success or not) and returns it."""
        return wait_until(
            lambda: (r := self.run(run_id)).get("status") in RUN_DONE and r,
            timeout,
            f"run {run_id} to end",
            logs=self.logs,
        )

    def stop(self) -> None:
        """Ends every process and its children: SIGTERM, then SIGKILL after 10 s."""
        for proc in reversed(self.processes.values()):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self.processes.values()):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in self.processes.values():
            _signal_group(proc, signal.SIGKILL)  # runs left behind in the session, if any
        self.processes.clear()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def start_dagster(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    module: str = "definitions",
    timeout: float = 180,
    wait_for_daemon: bool = True,
) -> DagsterStack:
    """Starts a code server for ``module``, the webserver and the daemon under ``tmp_path``.

    ``env`` is added to this process's environment (after ``BASE_ENV``); DAGSTER_HOME and
    FLYWHEEL_HOME are always ``tmp_path/dagster_home`` and ``tmp_path/flywheel``. Returns once
    the webserver answers, the code location has loaded and (unless ``wait_for_daemon`` is
    false) the daemon reports healthy.
    """
    dagster_home = tmp_path / "dagster_home"
    flywheel_home = tmp_path / "flywheel"
    log_dir = tmp_path / "logs"
    for path in (dagster_home, flywheel_home, log_dir):
        path.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    # Create the SQLite storages here, once: three processes creating them at the same moment
    # race on the schema migration.
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)
    code_port, web_port = free_port(), free_port()
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - grpc_server: {{host: 127.0.0.1, port: {code_port}, location_name: {LOCATION}}}\n"
    )
    full_env = {
        **os.environ,
        **BASE_ENV,
        **(env or {}),
        "DAGSTER_HOME": str(dagster_home),
        "FLYWHEEL_HOME": str(flywheel_home),
    }
    url = f"http://127.0.0.1:{web_port}"
    stack = DagsterStack(
        url=url,
        port=web_port,
        dagster_home=dagster_home,
        flywheel_home=flywheel_home,
        log_dir=log_dir,
        env=full_env,
        client=DagsterGraphQLClient("127.0.0.1", port_number=web_port, timeout=60),
        workspace=workspace,
    )

    try:
        stack.spawn("code-server", "dagster", "code-server", "start", "-h", "127.0.0.1",
              "-p", str(code_port), "-m", module, "-d", str(PROJECT_DIR))  # fmt: skip
        stack.spawn("webserver", "dagster-webserver", "-h", "127.0.0.1", "-p", str(web_port),
              "-w", str(workspace))  # fmt: skip
        stack.start_daemon()

        def alive() -> None:
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{stack.logs()}")

        load_errors: list[str] = []

        def location_loaded() -> bool:
            alive()
            data = stack.graphql(
                """{ workspaceOrError { ... on Workspace { locationEntries {
                     name loadStatus locationOrLoadError { __typename
                       ... on PythonError { message } } } } } }"""
            )
            for entry in data["workspaceOrError"]["locationEntries"]:
                loaded = entry["locationOrLoadError"] or {}
                if entry["name"] == LOCATION and loaded.get("__typename") == "RepositoryLocation":
                    return True
                if loaded.get("__typename") == "PythonError":
                    load_errors.append(loaded["message"])
                    if "Unreachable" not in loaded["message"]:  # not just "still starting"
                        raise RuntimeError(f"code location failed to load: {loaded['message']}")
            # The webserver looked before the code server was up: ask it to look again.
            stack.graphql(
                "mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n)"
                " { __typename } }",
                {"n": LOCATION},
            )
            return False

        wait_until(location_loaded, timeout, "the code location to load", 2.0, stack.logs)
        if wait_for_daemon:

            def daemon_healthy() -> bool:
                alive()
                data = stack.graphql(
                    "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
                )
                statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
                wanted = {"SCHEDULER", "BACKFILL", "QUEUED_RUN_COORDINATOR"}
                healthy = {s["daemonType"] for s in statuses if s["healthy"]}
                return wanted <= healthy

            wait_until(daemon_healthy, timeout, "the daemon's heartbeat", 2.0, stack.logs)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def dagster_stack(
    tmp_path: Path, env: Mapping[str, str] | None = None, **kwargs
) -> Iterator[DagsterStack]:
    stack = start_dagster(tmp_path, env, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def dagster_stack_factory(tmp_path: Path) -> Iterator[Callable[..., DagsterStack]]:
    """``start(env=None, **kwargs)`` starts a stack under this test's tmp_path (one per test:
    a second call uses a subfolder); every stack is stopped when the test ends."""
    stacks: list[DagsterStack] = []

    def start(env: Mapping[str, str] | None = None, **kwargs) -> DagsterStack:
        root = tmp_path if not stacks else tmp_path / f"stack{len(stacks)}"
        stacks.append(start_dagster(root, env, **kwargs))
        return stacks[-1]

    yield start
    for stack in stacks:
        stack.stop()


# -- object storage: a real S3 API server (moto's) on loopback --------------------------------
@dataclass
class S3Server:
    """moto's S3 server in this process, on a loopback port; ``env`` is what a client (this
    process's s3fs, or a subprocess) needs to reach it: the standard AWS variables."""

    endpoint: str
    server: Any
    env: dict[str, str] = field(default_factory=dict)

    def bucket(self) -> str:
        """A new, empty bucket: ``s3://<name>``."""
        import secrets

        import boto3

        name = f"flywheel-{secrets.token_hex(4)}"
        boto3.client("s3", **_client_options(self.env)).create_bucket(Bucket=name)
        return f"s3://{name}"


def _client_options(env: Mapping[str, str]) -> dict[str, str]:
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Starts moto's server (``moto[server]``) on 127.0.0.1 and stops it on exit."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "flywheel-test",
        "AWS_SECRET_ACCESS_KEY": "flywheel-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        yield S3Server(endpoint, server, env)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_session() -> Iterator[S3Server]:
    """One S3 server for the whole session, through tests/conftest.py (s3fs keeps one client per
    process: a second server's endpoint would not reach it)."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_home(s3_session: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<a new bucket>/home`` on the session's server, with the AWS variables set in this
    process (subprocesses inherit them): a FLYWHEEL_HOME on object storage."""
    for name, value in s3_session.env.items():
        monkeypatch.setenv(name, value)
    return f"{s3_session.bucket()}/home"
