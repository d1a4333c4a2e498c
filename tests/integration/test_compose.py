"""docker-compose.yml, checked by parsing it and by running its services without Docker:
the same commands, the same dagster.yaml, a real PostgreSQL on this machine."""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from tests.postgres import Postgres
from tests.servers import BIN, PROJECT_DIR, DagsterStack, free_port, wait_until

COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
INSTANCE = (PROJECT_DIR / "deploy" / "dagster.yaml").read_text()


def test_compose_declares_the_four_services():
    assert set(SERVICES) == {"postgres", "code_server", "webserver", "daemon"}
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    assert SERVICES["code_server"]["command"][:3] == ["dagster", "code-server", "start"]
    assert "definitions" in SERVICES["code_server"]["command"]
    assert SERVICES["webserver"]["command"][0] == "dagster-webserver"
    assert SERVICES["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    # The UI is published on loopback only.
    assert SERVICES["webserver"]["ports"] == ["127.0.0.1:3000:3000"]


def test_instance_reads_every_postgres_setting_the_compose_file_sets():
    wanted = set(re.findall(r"\{env: (DAGSTER_POSTGRES_\w+)\}", INSTANCE))
    assert wanted == {f"DAGSTER_POSTGRES_{k}" for k in ("USER", "PASSWORD", "HOST", "DB", "PORT")}
    for name in ("code_server", "webserver", "daemon"):
        assert wanted <= set(SERVICES[name]["environment"]), name
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
    for flag, value in (("-h", "127.0.0.1"), ("-p", None), ("-w", str(workspace))):
        if flag in out:
            i = out.index(flag) + 1
            out[i] = value if value is not None else str(ports[out[i]])
    return [str(BIN / out[0]), *out[1:]]


@pytest.mark.slow
def test_compose_services_run_without_docker(tmp_path: Path, postgres_db: Postgres, churn_task):
    home, flywheel_home, logs = tmp_path / "dagster_home", tmp_path / "flywheel", tmp_path / "logs"
    for path in (home, flywheel_home, logs):
        path.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE)
    code_port, web_port = free_port(), free_port()
    workspace = home / "workspace.yaml"
    workspace.write_text(
        (PROJECT_DIR / "deploy" / "workspace.yaml")
        .read_text()
        .replace("host: code_server", "host: 127.0.0.1")
        .replace("port: 4000", f"port: {code_port}")
    )
    env = {
        **os.environ,
        **{k: str(v) for k, v in SERVICES["code_server"]["environment"].items()},
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
    stack = DagsterStack(
        url=f"http://127.0.0.1:{web_port}", port=web_port, dagster_home=home,
        flywheel_home=flywheel_home, log_dir=logs, env=env,
        client=DagsterGraphQLClient("127.0.0.1", port_number=web_port, timeout=60),
        workspace=workspace,
    )  # fmt: skip
    ports = {"4000": code_port, "3000": web_port}
    try:
        for name in ("code_server", "webserver", "daemon"):
            with (logs / f"{name}.log").open("ab") as log:
                stack.processes[name] = subprocess.Popen(
                    _local(SERVICES[name]["command"], ports, workspace),
                    cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
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
    finally:
        stack.stop()
    assert (flywheel_home / "raw_data" / "2025-03-02.parquet").is_file()
    # The run went through the PostgreSQL instance (queued, then launched by the daemon).
    import sqlalchemy as sa

    with sa.create_engine(postgres_db.url).connect() as conn:
        count = conn.execute(sa.text("select count(*) from runs where run_id = :r"), {"r": run_id})
        assert count.scalar() == 1
