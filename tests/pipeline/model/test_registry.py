import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from pipeline.model.registry import ModelRegistry, ModelVersionError
from tests.helpers import save_tiny_version


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def test_save_and_load_round_trip(registry: ModelRegistry):
    version = save_tiny_version(registry)
    loaded = registry.load(version)
    assert loaded.version == version and loaded.threshold == 0.4
    assert loaded.preprocessor.vocabularies == {"c": ["a", "b"]}
    files = {p.name for p in registry.path(version).iterdir()}
    assert {"weights.pt", "preprocessing.json", "hparams.json", "training.json",
            "manifest.json"} <= files  # fmt: skip
    # Weights are a plain state_dict, loadable with weights_only=True.
    state = torch.load(registry.path(version) / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_versions_are_listed_oldest_first_and_never_half_written(registry: ModelRegistry):
    first, second = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    (registry.versions_dir / ".tmp-half-written").mkdir()
    assert registry.versions() == [first, second]


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_version_is_refused_by_name(registry: ModelRegistry, damage: str):
    version = save_tiny_version(registry)
    weights = registry.path(version) / "weights.pt"
    if damage == "corrupt":
        weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    else:
        weights.unlink()
    with pytest.raises(ModelVersionError, match=rf"{version}.*weights.pt is {damage}"):
        registry.load(version)
    with pytest.raises(ModelVersionError):
        registry.promote(version, "test")


def test_unknown_version_is_refused(registry: ModelRegistry):
    with pytest.raises(ModelVersionError, match="'nope' does not exist"):
        registry.load("nope")


def test_promote_and_rollback(registry: ModelRegistry):
    a, b, c = (save_tiny_version(registry, k) for k in range(3))
    registry.promote(a, "first")
    registry.promote(b, "better")
    assert registry.champion() == b
    registry.rollback()
    assert registry.champion() == a
    registry.rollback(c)
    assert registry.champion() == c
    actions = [h["action"] for h in registry.history()]
    assert actions == ["promote", "promote", "rollback", "rollback"]
    assert registry.versions() == [a, b, c]  # nothing deleted


def test_a_rollback_waits_for_a_gate_that_holds_the_promotion_lock(registry: ModelRegistry):
    a, b = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    registry.promote(a, "first")
    registry.promote(b, "better")
    # Another process holds the lock (as a gate deciding would) until told to let go.
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            " print('held', flush=True); sys.stdin.readline()"
        ), str(registry.root / ".promotion.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        done = threading.Event()
        worker = threading.Thread(target=lambda: (registry.rollback(), done.set()))
        worker.start()
        assert not done.wait(1.0)  # still waiting for the lock
        assert registry.champion() == b
        with (registry.root / ".promotion.lock").open("a") as fh:  # held elsewhere: not free
            with pytest.raises(BlockingIOError):
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        holder.communicate("\n", timeout=10)
    assert done.wait(10)
    worker.join()
    assert registry.champion() == a


def test_rollback_without_history_fails(registry: ModelRegistry):
    registry.promote(save_tiny_version(registry), "only one")
    with pytest.raises(ModelVersionError, match="no earlier champion"):
        registry.rollback()


def test_crash_before_pointer_swap_leaves_old_champion(registry, monkeypatch):
    old, new = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    registry.promote(old, "first")

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        registry.promote(new, "would be better")
    monkeypatch.undo()
    assert registry.champion() == old
    assert json.loads(registry.champion_file.read_text())["version"] == old
    assert registry.load(old).version == old


def test_crash_while_writing_version_leaves_nothing(registry, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_tiny_version(registry)
    assert registry.versions() == []
    assert not any(registry.versions_dir.iterdir())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"version": "2025', "is not valid JSON"),
        ("[]", "must hold a JSON object, not list"),
        ('{"version": 5}', "names no valid version: 'version' is 5"),
        ('{"version": "../x"}', "names no valid version"),
        ("{}", "names no valid version: 'version' is None"),
    ],
)
def test_a_broken_champion_json_is_refused_naming_the_file(registry, text, problem):
    registry.champion_file.parent.mkdir(parents=True)
    registry.champion_file.write_text(text)
    with pytest.raises(ModelVersionError, match=rf"^{registry.champion_file}.*{problem}"):
        registry.champion_record()


@pytest.mark.parametrize("version", [5, None, ["a"], "", ".hidden", "a/b"])
def test_a_version_name_that_is_no_plain_name_is_refused(registry, version):
    with pytest.raises(ModelVersionError, match="is not a valid version name"):
        registry.path(version)


# -- on object storage (memory://: fsspec's in-process store, no rename) ----------------------


def test_a_registry_on_object_storage_saves_loads_and_promotes(memory_root):
    registry = ModelRegistry(str(memory_root / "models"))
    assert not isinstance(registry.root, Path) and registry.versions() == []
    first, second = save_tiny_version(registry, 0), save_tiny_version(registry, 1)
    assert registry.versions() == [first, second]
    assert registry.load(first).threshold == 0.4
    registry.promote(first, "first")
    registry.attach(first, "evaluation.json", {"ok": True})
    with registry.promotion_lock():
        registry.promote(second, "second")
    assert registry.champion() == second
    assert [r["version"] for r in registry.history()] == [first, second]
    assert registry.rollback()["version"] == first and registry.champion() == first
    names = {p.name for p in registry.path(first).iterdir()}
    assert {"manifest.json", "weights.pt", "evaluation.json"} <= names


def test_a_version_without_its_manifest_is_not_listed_pointed_at_or_loaded(memory_root):
    """An upload cut off before its last object (manifest.json) leaves a version nobody uses."""
    registry = ModelRegistry(str(memory_root / "models"))
    version = save_tiny_version(registry)
    registry.promote(version, "good")
    half = save_tiny_version(registry, 1)
    (registry.path(half) / "manifest.json").unlink()
    assert registry.versions() == [version]
    with pytest.raises(ModelVersionError, match=r"manifest\.json is missing"):
        registry.promote(half, "half")
    with pytest.raises(ModelVersionError, match=r"manifest\.json is missing"):
        registry.load(half)
    assert registry.champion() == version


def test_a_promotion_on_object_storage_loses_to_one_that_came_in_between(memory_root):
    from pipeline.model.pointers import PointerConflict

    registry = ModelRegistry(str(memory_root / "models"))
    first, second, third = (save_tiny_version(registry, k) for k in range(3))
    registry.promote(first, "first")
    with registry.promotion_lock():  # this one read the pointer naming `first` ...
        ModelRegistry(str(memory_root / "models")).promote(second, "meanwhile")
        with pytest.raises(PointerConflict):  # ... and may not replace `second` unseen
            registry.promote(third, "stale")
    assert registry.champion() == second
    assert [r["version"] for r in registry.history()] == [first, second]
