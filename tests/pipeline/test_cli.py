import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from pipeline.model.features import Preprocessor
from pipeline.model.module import FlywheelModule
from pipeline.model.registry import ModelRegistry
from tests.servers import free_port

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    registry = ModelRegistry(tmp_path / "models")
    for seed in range(2):
        torch.manual_seed(seed)
        module = FlywheelModule(cardinalities=[3], n_numeric=2, hidden_sizes=[4])
        prep = Preprocessor(["c"], ["x"], {"c": ["a", "b"]}, {"x": 0.0}, {"x": 1.0})
        version = registry.save_version(
            module, prep, {"threshold": 0.5, "prior": 0.2, "window": {"train_start": "2025-01-01",
                                                                     "train_end": "2025-02-01"}}
        )  # fmt: skip
        registry.promote(version, "test")
    return tmp_path


def test_models_list_marks_the_champion(home: Path, capsys):
    assert main(["--home", str(home), "models", "list"]) == 0
    out = capsys.readouterr().out
    champion = ModelRegistry(home / "models").champion()
    assert f"* {champion}" in out
    assert "2025-01-01..2025-02-01" in out


def test_models_list_shows_the_candidate_and_rollback_ends_a_probation(home: Path, capsys):
    registry = ModelRegistry(home / "models")
    first, second = registry.versions()
    registry.set_candidate(first, second, "test")
    assert main(["--home", str(home), "models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"c {first}" in out and "c candidate, scored in shadow since" in out
    registry.start_probation(second, first, labels=200)
    assert main(["--home", str(home), "models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"p {first}" in out and f"while {second} is on probation" in out
    assert main(["--home", str(home), "models", "rollback"]) == 0
    assert "the probation of the champion rolled back from has ended" in capsys.readouterr().out
    assert registry.champion() == first and registry.shadow_record() is None


def test_models_show(home: Path, capsys):
    version = ModelRegistry(home / "models").versions()[0]
    assert main(["--home", str(home), "models", "show", version]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == version and shown["champion"] is False
    assert shown["hparams"]["hidden_sizes"] == [4]


def test_models_rollback_and_refusals(home: Path, capsys):
    registry = ModelRegistry(home / "models")
    first, second = registry.versions()
    assert main(["--home", str(home), "models", "rollback"]) == 0
    assert registry.champion() == first
    assert f"champion is now {first} (was {second})" in capsys.readouterr().out
    (registry.path(second) / "hparams.json").write_text("{}")
    assert main(["--home", str(home), "models", "rollback", second]) == 1
    assert f"model version '{second}': file hparams.json is corrupt" in capsys.readouterr().err
    assert registry.champion() == first


def test_console_script_is_installed(home: Path):
    exe = Path(sys.executable).with_name("flywheel")
    proc = subprocess.run([str(exe), "--home", str(home), "models", "list"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "champion" in proc.stdout


BROKEN_POINTERS = ['{"version": "2025', '{"version": 5}', "[1, 2]"]


@pytest.mark.parametrize("pointer", BROKEN_POINTERS, ids=["half-written", "number", "list"])
@pytest.mark.parametrize("command", [["list"], ["show", "VERSION"], ["rollback"]])
def test_models_commands_name_a_broken_champion_json_in_one_line(home, capsys, pointer, command):
    registry = ModelRegistry(home / "models")
    command = [registry.versions()[0] if arg == "VERSION" else arg for arg in command]
    registry.champion_file.write_text(pointer)
    assert main(["--home", str(home), "models", *command]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("flywheel: ")
    assert str(registry.champion_file) in err
    assert registry.champion_file.read_text() == pointer  # nothing was changed


def test_rollback_to_a_named_version_replaces_a_broken_champion_json(home, capsys):
    registry = ModelRegistry(home / "models")
    first = registry.versions()[0]
    registry.champion_file.write_text('{"version": 5}')
    assert main(["--home", str(home), "models", "rollback", first]) == 0
    assert registry.champion() == first


def test_serve_with_a_broken_champion_json_stops_with_one_line(home):
    registry = ModelRegistry(home / "models")
    registry.champion_file.write_text('{"version": "2025')
    # `python -m pipeline.cli` from the project: the code of this tree, as the script runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--home", str(home), "serve", "--port",
         str(free_port())], cwd=PROJECT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("flywheel: ") and "champion.json is not valid JSON" in proc.stderr
