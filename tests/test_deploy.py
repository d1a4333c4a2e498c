"""The deployment files agree with each other and with the code: docker-compose.yml,
deploy/dagster.yaml (the DockerRunLauncher), deploy/flywheel.env.example, the Helm chart's values
and the Kubernetes manifests. No Docker engine or cluster runs here, so they are parsed and
checked: every image, command, port, volume, environment variable and config key they name.
(tests/integration/test_compose.py runs the compose services' commands without Docker.)"""

import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

from tests.servers import PROJECT_DIR

DEPLOY = PROJECT_DIR / "deploy"
COMPOSE = yaml.safe_load((PROJECT_DIR / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
INSTANCE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
LAUNCHER = INSTANCE["run_launcher"]
ENV_EXAMPLE = DEPLOY / "flywheel.env.example"
HELM = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
USER_CODE = HELM["dagster-user-deployments"]["deployments"][0]
K8S_SERVING = list(yaml.safe_load_all((DEPLOY / "k8s" / "serving.yaml").read_text()))
K8S_STORAGE = yaml.safe_load((DEPLOY / "k8s" / "storage.yaml").read_text())
DEPLOYMENT = next(d for d in K8S_SERVING if d["kind"] == "Deployment")
SERVICE = next(d for d in K8S_SERVING if d["kind"] == "Service")
SERVING_POD = DEPLOYMENT["spec"]["template"]["spec"]
SERVING_CONTAINER = SERVING_POD["containers"][0]
FLYWHEEL_SERVICES = ("code_server", "webserver", "daemon", "serving")
IMAGE = SERVICES["code_server"]["image"]

# Variables that programs other than Flywheel's code read: PostgreSQL's image, and Dagster's
# instance (deploy/dagster.yaml; checked against the instance below).
READ_ELSEWHERE = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "DAGSTER_CURRENT_IMAGE"}


def code_env_vars() -> set[str]:
    """Every variable the code reads: definitions.py (Settings.from_env, EnvVar) and the
    flywheel CLI entry point, the only two readers of the environment."""
    names: set[str] = set()
    for path in (PROJECT_DIR / "definitions.py", PROJECT_DIR / "pipeline" / "cli.py"):
        text = path.read_text()
        names |= set(re.findall(r"""(?:get|EnvVar)\(\s*["']([A-Z][A-Z0-9_]+)["']""", text))
    return names


def env_file(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def service_env(name: str) -> dict[str, str]:
    """A compose service's environment as its container gets it: the env file, then
    ``environment`` over it (compose's precedence)."""
    service = SERVICES[name]
    env = {}
    files = service.get("env_file", [])
    for path in [files] if isinstance(files, str) else files:
        assert path == "deploy/flywheel.env", name  # the one credentials file
        env |= env_file(ENV_EXAMPLE)
    return env | {k: str(v) for k, v in (service.get("environment") or {}).items()}


def instance_env_vars() -> set[str]:
    return set(re.findall(r"\{env: (\w+)\}", (DEPLOY / "dagster.yaml").read_text()))


def k8s_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_code_env_vars_are_found():
    # the scan itself: a few the code certainly reads
    found = code_env_vars()
    assert {"FLYWHEEL_HOME", "FLYWHEEL_FEEDBACK_URL", "FLYWHEEL_API_TOKEN",
            "FLYWHEEL_ALLOWED_HOSTS", "FLYWHEEL_TRAINING_GPUS"} <= found  # fmt: skip
    assert all(name.startswith("FLYWHEEL_") for name in found)


def test_every_variable_the_deployment_sets_is_one_something_reads():
    known = code_env_vars() | instance_env_vars() | READ_ELSEWHERE
    sets = {
        "compose": {k for name in SERVICES for k in service_env(name)},
        "env example": set(env_file(ENV_EXAMPLE)),
        "run launcher": {v.split("=")[0] for v in LAUNCHER["config"]["env_vars"]},
        "helm": {e["name"] for e in USER_CODE["env"]},
        "k8s serving": set(k8s_env(SERVING_CONTAINER)),
    }
    for where, names in sets.items():
        assert names <= known, f"{where} sets variables nothing reads: {names - known}"


def test_compose_declares_the_services_on_one_image():
    assert set(SERVICES) == {"postgres", *FLYWHEEL_SERVICES}
    assert SERVICES["postgres"]["image"].startswith("postgres:15")
    assert SERVICES["code_server"]["build"] == "."
    for name in FLYWHEEL_SERVICES:
        assert SERVICES[name]["image"] == IMAGE, name
    # every published port is on loopback only
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_serving_service_runs_flywheel_serve_on_its_published_port():
    from pipeline.cli import build_parser, cmd_serve

    service = SERVICES["serving"]
    command = service["command"]
    assert command[0] == "flywheel"  # [project.scripts]
    scripts = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["flywheel"] == "pipeline.cli:main"
    args = build_parser().parse_args(command[1:])
    assert args.fn is cmd_serve and args.host == "0.0.0.0"
    assert service["ports"] == [f"127.0.0.1:{args.port}:{args.port}"]
    env = service_env("serving")
    # PostgreSQL's feedback store, the champion from the shared volume, read-only
    assert env["FLYWHEEL_FEEDBACK_URL"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in env["FLYWHEEL_FEEDBACK_URL"]
    assert f"{env['FLYWHEEL_HOME']}:ro" in {v.split(":", 1)[1] for v in service["volumes"]}
    assert service["volumes"] == [f"flywheel-data:{env['FLYWHEEL_HOME']}:ro"]
    assert env["FLYWHEEL_PROMOTION"] == "shadow"
    assert env["FLYWHEEL_API_TOKEN"]
    assert "127.0.0.1" in env["FLYWHEEL_ALLOWED_HOSTS"].split(",")
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dagster_services_share_the_environment_and_storage():
    homes = set()
    for name in ("code_server", "webserver", "daemon"):
        env = service_env(name)
        assert instance_env_vars() <= set(env), name
        assert env["FLYWHEEL_PROMOTION"] == "shadow", name
        assert env["DAGSTER_POSTGRES_HOST"] == "postgres" and env["DAGSTER_POSTGRES_PORT"] == "5432"
        homes.add(env["FLYWHEEL_HOME"])
    assert len(homes) == 1
    assert "flywheel-data:/data/flywheel" in SERVICES["code_server"]["volumes"]
    # the daemon launches runs through the host's engine; the webserver terminates them
    for name in ("daemon", "webserver"):
        assert "/var/run/docker.sock:/var/run/docker.sock" in SERVICES[name]["volumes"]


def test_credentials_come_from_an_env_file_outside_the_repository():
    example = env_file(ENV_EXAMPLE)
    assert {"POSTGRES_PASSWORD", "DAGSTER_POSTGRES_PASSWORD", "FLYWHEEL_FEEDBACK_URL",
            "FLYWHEEL_API_TOKEN"} <= set(example)  # fmt: skip
    # the three passwords agree (the feedback URL carries the same role and password)
    password = example["POSTGRES_PASSWORD"]
    assert example["DAGSTER_POSTGRES_PASSWORD"] == password
    assert f"flywheel:{password}@postgres:5432/flywheel" in example["FLYWHEEL_FEEDBACK_URL"]
    # no password is written in the compose file itself
    written = str({n: s.get("environment") for n, s in SERVICES.items()})
    assert "PASSWORD" not in written and "FLYWHEEL_FEEDBACK_URL" not in written
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/flywheel.env"], cwd=PROJECT_DIR, check=False
    )
    assert ignored.returncode == 0, "deploy/flywheel.env must be in .gitignore"
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/flywheel.env"], cwd=PROJECT_DIR, capture_output=True, text=True
    )
    assert tracked.stdout.strip() == ""


def test_run_launcher_config_loads_with_dagster_dockers_own_schema(monkeypatch):
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_docker import DockerRunLauncher

    data = ConfigurableClassData(
        LAUNCHER["module"], LAUNCHER["class"], yaml.safe_dump(LAUNCHER["config"])
    )
    launcher = data.rehydrate(DockerRunLauncher)  # validates against DockerRunLauncher.config_type
    assert isinstance(launcher, DockerRunLauncher)
    assert launcher.image == IMAGE == service_env("code_server")["DAGSTER_CURRENT_IMAGE"]
    # the compose network and volume, under the fixed names the compose file gives them
    assert launcher.networks == [COMPOSE["networks"]["default"]["name"]]
    volume, _, mount = launcher.container_kwargs["volumes"][0].partition(":")
    assert COMPOSE["volumes"][volume]["name"] == volume
    assert mount == service_env("daemon")["FLYWHEEL_HOME"]
    # what each run reads: the instance's PostgreSQL settings and Flywheel's storage and store,
    # passed on by name from the daemon, which has them all
    daemon = service_env("daemon")
    passed = set(LAUNCHER["config"]["env_vars"])
    assert instance_env_vars() | {"FLYWHEEL_HOME", "FLYWHEEL_FEEDBACK_URL"} <= passed
    assert passed <= set(daemon)
    for name, value in daemon.items():
        monkeypatch.setenv(name, value)
    from dagster._core.utils import parse_env_var

    assert dict(parse_env_var(v) for v in launcher.env_vars)["FLYWHEEL_HOME"] == "/data/flywheel"


def test_a_wrong_run_launcher_key_is_refused_by_the_same_schema():
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._serdes.config_class import ConfigurableClassData
    from dagster_docker import DockerRunLauncher

    config = {**LAUNCHER["config"], "volumes": ["flywheel-data:/data/flywheel"]}
    data = ConfigurableClassData(LAUNCHER["module"], LAUNCHER["class"], yaml.safe_dump(config))
    with pytest.raises(DagsterInvalidConfigError):
        data.rehydrate(DockerRunLauncher)


def test_the_image_installs_the_deploy_extra_with_both_run_launchers():
    steps = (PROJECT_DIR / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[deploy]"' in steps
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    for extra in ("deploy", "dev"):
        pins = set(project["optional-dependencies"][extra])
        assert {"dagster-postgres==0.29.27", "dagster-docker==0.29.27",
                "dagster-k8s==0.29.27"} <= pins, extra  # fmt: skip
    assert "ENV DAGSTER_HOME=/opt/dagster/home" in steps
    assert "COPY deploy/dagster.yaml deploy/workspace.yaml /opt/dagster/home/" in steps


# The keys of the chart's values that Flywheel sets, as the chart's values schema names them
# (helm/dagster/values.yaml and schema/ in dagster-io/dagster): a typo would be ignored by Helm.
HELM_TOP = {"dagster-user-deployments", "runLauncher", "postgresql", "dagsterDaemon", "telemetry"}
USER_DEPLOYMENT_KEYS = {"name", "image", "codeServerArgs", "dagsterApiGrpcArgs", "port", "env",
                        "envSecrets", "envConfigMaps", "volumes", "volumeMounts", "resources",
                        "includeConfigInLaunchedRuns", "replicaCount"}  # fmt: skip


def test_helm_values_name_the_flywheel_image_module_and_storage():
    assert set(HELM) <= HELM_TOP
    assert HELM["dagster-user-deployments"]["enabled"] is True
    assert set(USER_CODE) <= USER_DEPLOYMENT_KEYS
    image = USER_CODE["image"]
    assert f"{image['repository']}:{image['tag']}" == IMAGE == SERVING_CONTAINER["image"]
    # the chart runs `dagster code-server start -h 0.0.0.0 -p <port> <codeServerArgs>`: the
    # module and the port of the compose file's code server
    compose_cmd = SERVICES["code_server"]["command"]
    assert USER_CODE["codeServerArgs"] == compose_cmd[compose_cmd.index("-m") :]
    assert str(USER_CODE["port"]) == compose_cmd[compose_cmd.index("-p") + 1]
    assert HELM["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(HELM["runLauncher"]["config"]) == {"k8sRunLauncher"}
    assert HELM["postgresql"]["enabled"] is True
    assert "postgresqlPassword" not in HELM["postgresql"]  # given at install time
    assert HELM["dagsterDaemon"]["enabled"] is True
    assert HELM["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert USER_CODE["includeConfigInLaunchedRuns"]["enabled"] is True  # runs get env and volume
    env = k8s_env(USER_CODE)
    assert env["FLYWHEEL_HOME"] == USER_CODE["volumeMounts"][0]["mountPath"]
    assert env["FLYWHEEL_PROMOTION"] == "shadow"
    claim = K8S_STORAGE["metadata"]["name"]
    assert USER_CODE["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert "ReadWriteMany" in K8S_STORAGE["spec"]["accessModes"]
    int(env["FLYWHEEL_TRAINING_GPUS"])


def test_k8s_serving_runs_the_compose_command_with_the_same_store_and_storage():
    assert SERVING_CONTAINER["command"] == SERVICES["serving"]["command"]
    from pipeline.cli import build_parser

    args = build_parser().parse_args(SERVING_CONTAINER["command"][1:])
    port = SERVING_CONTAINER["ports"][0]
    assert port["containerPort"] == args.port
    assert SERVICE["spec"]["ports"][0]["targetPort"] == port["name"]
    assert SERVICE["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert DEPLOYMENT["spec"]["template"]["metadata"]["labels"] == SERVICE["spec"]["selector"]
    assert DEPLOYMENT["spec"]["replicas"] >= 2
    env = k8s_env(SERVING_CONTAINER)
    mount = SERVING_CONTAINER["volumeMounts"][0]
    assert mount["mountPath"] == env["FLYWHEEL_HOME"] and mount["readOnly"] is True
    volume = next(v for v in SERVING_POD["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == K8S_STORAGE["metadata"]["name"]
    # the same secret as the user code (FLYWHEEL_FEEDBACK_URL, FLYWHEEL_API_TOKEN)
    secret = SERVING_CONTAINER["envFrom"][0]["secretRef"]["name"]
    assert secret == USER_CODE["envSecrets"][0]["name"]
    # the probe's Host header is one the app answers to
    probe = SERVING_CONTAINER["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health" and probe["port"] == port["name"]
    host = {h["name"]: h["value"] for h in probe["httpHeaders"]}["Host"]
    assert host in env["FLYWHEEL_ALLOWED_HOSTS"].split(",")


def test_training_runs_ask_kubernetes_for_gpus_through_the_dagster_k8s_config_tag():
    from dagster_k8s.job import get_user_defined_k8s_config

    from definitions import Settings, build_defs

    defs = build_defs(Settings(training_gpus=2))
    for name in ("training_job", "nightly_job", "feedback_job"):
        config = get_user_defined_k8s_config(defs.resolve_job_def(name).tags)
        resources = config.container_config["resources"]  # the run pod's container's
        assert resources["limits"] == {"nvidia.com/gpu": "2"}, name
    for name in ("data_job", "live_job"):  # no GPU for runs that do not train
        assert "dagster-k8s/config" not in defs.resolve_job_def(name).tags
    plain = build_defs(Settings.from_env({}))
    assert "dagster-k8s/config" not in plain.resolve_job_def("training_job").tags
    assert Settings.from_env({"FLYWHEEL_TRAINING_GPUS": "1"}).training_gpus == 1


def test_operations_doc_walks_through_the_files_it_names():
    doc = (PROJECT_DIR / "docs" / "operations.md").read_text()
    named = ("deploy/flywheel.env.example", "deploy/helm/values.yaml", "deploy/k8s/serving.yaml",
             "deploy/k8s/storage.yaml", "dagster-k8s/config")  # fmt: skip
    for path in named:
        assert path in doc, path
    # every `helm`/`kubectl` line names a file that exists
    for line in re.findall(r"^\s*(?:helm|kubectl) .*$", doc, re.M):
        for word in shlex.split(line.replace("\\", "")):
            if word.startswith("deploy/"):
                assert (PROJECT_DIR / word).exists(), word
