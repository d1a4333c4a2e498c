"""The front door: the Definitions load and resolve, stay light, and the layers hold."""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = {"raw_data", "cleaned_features", "user_feedback", "trained_model", "evaluation_report",
          "deployed_model", "live_performance", "shadow_evaluation"}  # fmt: skip
JOBS = {"data_job", "training_job", "nightly_job", "feedback_job", "live_job", "shadow_job"}


def test_definitions_load_and_resolve(flywheel_env: Path):
    from definitions import Settings, build_defs

    defs = build_defs(Settings.from_env(os.environ))
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == ASSETS
    assert {j.name for j in repo.get_all_jobs()} >= JOBS
    selected = {
        name: {
            k.to_user_string() for k in defs.resolve_job_def(name).asset_layer.selected_asset_keys
        }
        for name in JOBS
    }
    assert selected["data_job"] == {"raw_data", "cleaned_features"}
    assert selected["training_job"] == {"trained_model", "evaluation_report", "deployed_model"}
    assert selected["nightly_job"] == ASSETS - {"user_feedback", "shadow_evaluation"}
    assert selected["feedback_job"] == ASSETS - {"raw_data", "cleaned_features", "live_performance"}
    assert selected["live_job"] == {"live_performance"}
    assert selected["shadow_job"] == {"shadow_evaluation"}
    for name in JOBS:  # one process per run, set once for every job
        assert defs.resolve_job_def(name).executor_def.name == "in_process"
    assert defs.resolve_schedule_def("nightly_retrain").job_name == "nightly_job"
    assert defs.resolve_sensor_def("feedback_sensor").job_name == "feedback_job"
    assert defs.resolve_sensor_def("live_performance_sensor").job_name == "live_job"
    assert defs.resolve_sensor_def("shadow_sensor").job_name == "shadow_job"
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert checks == {"raw_data_expectations", "cleaned_features_expectations", "live_auc_holds"}


def test_settings_come_from_the_environment_only_through_definitions(tmp_path: Path):
    from definitions import Settings, build_defs

    env = {"FLYWHEEL_HOME": str(tmp_path / "fw"), "FLYWHEEL_START_DATE": "2026-02-01",
           "FLYWHEEL_FEEDBACK_MIN_NEW": "7", "FLYWHEEL_FEEDBACK_SENSOR": "running",
           "FLYWHEEL_PROMOTION": "shadow"}  # fmt: skip
    settings = Settings.from_env(env)
    defs = build_defs(settings)
    raw = defs.get_assets_def("raw_data")
    assert raw.partitions_def.get_first_partition_key() == "2026-02-01"
    sensor = defs.resolve_sensor_def("feedback_sensor")
    assert "7 new feedback" in sensor.description and sensor.default_status.value == "RUNNING"
    assert defs.resources["storage"].home == str(tmp_path / "fw")
    assert build_defs(Settings()).get_assets_def("raw_data").partitions_def.start.year == 2025

    def promotion_default(d) -> str:
        schema = d.get_assets_def("deployed_model").op.config_schema.config_type
        return schema.fields["promotion"].default_value

    assert promotion_default(defs) == "shadow"
    assert promotion_default(build_defs(Settings())) == "direct"
    assert defs.resolve_sensor_def("shadow_sensor").default_status.value == "RUNNING"


def test_every_asset_has_description_group_and_kinds():
    from definitions import defs

    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name and node.group_name != "default", key
        assert node.kinds, key


def _fresh_python(code: str) -> str:
    """Runs ``code`` in a new interpreter (nothing imported yet) and returns its last line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1], proc.stderr


def test_pipeline_never_imports_dagster():
    """Import every pipeline module; dagster must not be among the loaded modules."""
    import pipeline

    names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline.")]
    assert len(names) > 20
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')))"
    )
    last, _ = _fresh_python(code)
    assert json.loads(last) == []


def test_loading_the_definitions_is_light_and_quiet():
    """The webserver, the daemon and every data run load definitions: no torch, no Lightning,
    no Great Expectations, and no Beta/Preview warnings for the features used on purpose."""
    code = (
        "import json, sys, definitions\n"
        "print(json.dumps([m for m in ('torch', 'pytorch_lightning', 'lightning',"
        " 'great_expectations', 'sklearn') if m in sys.modules]))"
    )
    last, stderr = _fresh_python(code)
    assert json.loads(last) == []
    assert "BetaWarning" not in stderr and "PreviewWarning" not in stderr, stderr


@pytest.mark.slow
def test_dg_check_and_list_defs(tmp_path: Path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "FLYWHEEL_HOME": str(tmp_path / "fw"),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    (tmp_path / "dagster.yaml").write_text("")
    dg = bin_dir / "dg"
    check = subprocess.run(
        [str(dg), "check", "defs"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout
    listed = subprocess.run(
        [str(dg), "list", "defs", "--json"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert {a["asset_key"] for a in data["assets"]} == ASSETS
    assert {j["name"] for j in data["jobs"]} >= JOBS
    assert [s["name"] for s in data["schedules"]] == ["nightly_retrain"]
    assert [s["name"] for s in data["sensors"]] == [
        "feedback_sensor",
        "live_performance_sensor",
        "shadow_sensor",
    ]
