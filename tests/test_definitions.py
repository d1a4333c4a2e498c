import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_and_resolve(flywheel_env: Path):
    from definitions import defs

    repo = defs.get_repository_def()
    for job in repo.get_all_jobs():
        assert job.name
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} >= {
        "raw_data", "cleaned_features", "trained_model", "evaluation_report", "deployed_model"
    }  # fmt: skip
    for name in ("data_job", "training_job"):
        defs.resolve_job_def(name)
    for schedule in repo.schedule_defs:
        defs.resolve_schedule_def(schedule.name)
    for sensor in repo.sensor_defs:
        defs.resolve_sensor_def(sensor.name)


def test_every_asset_has_description_group_and_kinds():
    from definitions import defs

    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description, key
        assert node.group_name and node.group_name != "default", key
        assert node.kinds, key


@pytest.mark.slow
def test_dagster_definitions_validate(tmp_path: Path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "FLYWHEEL_HOME": str(tmp_path / "fw")}
    (tmp_path / "dagster.yaml").write_text("")
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "definitions"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_pipeline_never_imports_dagster():
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "pipeline").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import dagster", "from dagster"))
    ]
    assert offenders == []
