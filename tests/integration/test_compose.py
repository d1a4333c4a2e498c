"""docker-compose.yml, checked by parsing it and by running its services without Docker:
the same commands, the same dagster.yaml (less its DockerRunLauncher: runs start as processes
here), a real PostgreSQL on this machine, and the serving app beside the Dagster services.
tests/test_deploy.py checks the files against each other and the code."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient

from tests.postgres import Postgres
from tests.servers import BIN, PROJECT_DIR, DagsterStack, free_port, wait_until

COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
INSTANCE = (PROJECT_DIR / "deploy" / "dagster.yaml").read_text()
ENV_EXAMPLE = PROJECT_DIR / "deploy" / "flywheel.env.example"


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _service_env(name: str) -> dict[str, str]:
    """The service's environment: the env file (its example), then ``environment`` over it."""
    env = _env_file(ENV_EXAMPLE) if SERVICES[name].get("env_file") else {}
    return env | {k: str(v) for k, v in SERVICES[name]["environment"].items()}


def _without_docker(instance: str) -> str:
    """deploy/dagster.yaml with the default run launcher (a process per run on this machine)."""
    config = yaml.safe_load(instance)
    assert config.pop("run_launcher")["class"] == "DockerRunLauncher"
    return yaml.safe_dump(config)


def test_compose_declares_the_services():
    assert set(SERVICES) == {"postgres", "code_server", "webserver", "daemon", "serving"}
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    assert SERVICES["code_server"]["command"][:3] == ["dagster", "code-server", "start"]
    assert "definitions" in SERVICES["code_server"]["command"]
    assert SERVICES["webserver"]["command"][0] == "dagster-webserver"
    assert SERVICES["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    # The UI is published on loopback only.
    assert SERVICES["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert SERVICES["serving"]["command"][:2] == ["flywheel", "serve"]
    assert SERVICES["serving"]["ports"] == ["127.0.0.1:8000:8000"]


def test_instance_reads_every_postgres_setting_the_compose_file_sets():
    wanted = set(re.findall(r"\{env: (DAGSTER_POSTGRES_\w+)\}", INSTANCE))
    assert wanted == {f"DAGSTER_POSTGRES_{k}" for k in ("USER", "PASSWORD", "HOST", "DB", "PORT")}
    for name in ("code_server", "webserver", "daemon"):
        assert wanted <= set(_service_env(name)), name
    workspace = yaml.safe_load((PROJECT_DIR / "deploy" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    code_cmd = SERVICES["code_server"]["command"]
    assert server["host"] == "code_server"
    assert str(server["port"]) == code_cmd[code_cmd.index("-p") + 1]


def test_image_installs_the_cpu_torch_first():
    steps = (PROJECT_DIR / "Dockerfile").read_text()
    assert steps.index("torch==2.13.0") < steps.index('pip install --no-cache-dir ".[deploy]"')


def _local(command: list[str], ports: dict[str, int], workspace: Path) -> list[str]:
    """The compose command with this machine's host, ports and workspace file."""
    out = list(command)
    pairs = (("-h", "127.0.0.1"), ("--host", "127.0.0.1"), ("-p", None), ("--port", None),
             ("-w", str(workspace)))  # fmt: skip
    for flag, value in pairs:
        if flag in out:
            i = out.index(flag) + 1
            out[i] = value if value is not None else str(ports[out[i]])
    return [str(BIN / out[0]), *out[1:]]


@pytest.mark.slow
def test_compose_services_run_without_docker(tmp_path: Path, postgres_db: Postgres, churn_task):
    home, flywheel_home, logs = tmp_path / "dagster_home", tmp_path / "flywheel", tmp_path / "logs"
    for path in (home, flywheel_home, logs):
        path.mkdir()
    (home / "dagster.yaml").write_text(_without_docker(INSTANCE))
    code_port, web_port, serve_port = free_port(), free_port(), free_port()
    workspace = home / "workspace.yaml"
    workspace.write_text(
        (PROJECT_DIR / "deploy" / "workspace.yaml")
        .read_text()
        .replace("host: code_server", "host: 127.0.0.1")
        .replace("port: 4000", f"port: {code_port}")
    )
    local = {
        "DAGSTER_POSTGRES_HOST": postgres_db.host,
        "DAGSTER_POSTGRES_PORT": str(postgres_db.port),
        "DAGSTER_POSTGRES_USER": postgres_db.user,
        "DAGSTER_POSTGRES_PASSWORD": postgres_db.password,
        "DAGSTER_POSTGRES_DB": postgres_db.database,
        "FLYWHEEL_FEEDBACK_URL": postgres_db.url,
        "DAGSTER_HOME": str(home),
        "FLYWHEEL_HOME": str(flywheel_home),
        "FLYWHEEL_TASK": str(churn_task),
    }
    env = {**os.environ, **_service_env("code_server"), **local}
    serve_env = {**os.environ, **_service_env("serving"), **local}
    stack = DagsterStack(
        url=f"http://127.0.0.1:{web_port}", port=web_port, dagster_home=home,
        flywheel_home=flywheel_home, log_dir=logs, env=env,
        client=DagsterGraphQLClient("127.0.0.1", port_number=web_port, timeout=60),
        workspace=workspace,
    )  # fmt: skip
    ports = {"4000": code_port, "3000": web_port, "8000": serve_port}
    try:
        for name in ("code_server", "webserver", "daemon", "serving"):
            with (logs / f"{name}.log").open("ab") as log:
                stack.processes[name] = subprocess.Popen(
                    _local(SERVICES[name]["command"], ports, workspace),
                    cwd=PROJECT_DIR, env=serve_env if name == "serving" else env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip

        def loaded() -> bool:
            data = stack.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name"
                " locationOrLoadError { __typename } } } } }"
            )
            entries = data["workspaceOrError"]["locationEntries"]
            if any(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
                return True
            stack.graphql(
                'mutation { reloadRepositoryLocation(repositoryLocationName: "flywheel")'
                " { __typename } }"
            )
            return False

        wait_until(loaded, 180, "the code server's definitions", 2.0, stack.logs)
        run_id = stack.client.submit_job_execution(
            "data_job", tags={"dagster/partition": "2025-03-02"}
        )
        run = stack.wait_for_run(run_id, timeout=300)
        assert run["status"] == "SUCCESS", stack.logs()
        # The serving app: up on its port, the store's tables created in PostgreSQL, no
        # champion yet (nothing trained), and the env file's token required.
        serving = f"http://127.0.0.1:{serve_port}"
        wait_until(
            lambda: requests.get(f"{serving}/health", timeout=5).status_code, 60,
            "the serving app", 0.5, stack.logs,
        )  # fmt: skip
        health = requests.get(f"{serving}/health", timeout=5)
        assert health.status_code == 503 and health.json()["status"] == "no_model"
        assert requests.get(f"{serving}/model", timeout=5).status_code == 401
        token = _service_env("serving")["FLYWHEEL_API_TOKEN"]
        authorized = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{serving}/model", headers=authorized, timeout=5).status_code == 503
    finally:
        stack.stop()
    assert (flywheel_home / "raw_data" / "2025-03-02.parquet").is_file()
    # The run went through the PostgreSQL instance (queued, then launched by the daemon).
    import sqlalchemy as sa

    with sa.create_engine(postgres_db.url).connect() as conn:
        count = conn.execute(sa.text("select count(*) from runs where run_id = :r"), {"r": run_id})
        assert count.scalar() == 1
        # the serving app and the runs share the one database: the feedback store's tables
        tables = set(sa.inspect(conn).get_table_names())
        assert {"predictions", "feedback", "flywheel_schema", "runs"} <= tables
