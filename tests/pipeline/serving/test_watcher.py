"""ChampionWatcher: loads the champion, swaps to a new one, keeps the old one on failure.

``check()`` is called directly (no thread); each test works on its own copy of the registry.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline.data.storage import PartitionStore
from pipeline.model.registry import ModelRegistry
from pipeline.serving.served import ServedModel
from pipeline.serving.watcher import ChampionWatcher
from tests.helpers import SERVE_DAY, build_home, serve_rows, train_small

pytestmark = pytest.mark.slow  # the module's home trains two small models


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A home with a champion (``first``) and a second, unpromoted version (``second``)."""
    root = tmp_path_factory.mktemp("watcher")
    spec, home, registry = build_home(root)
    first = registry.champion()
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    second = train_small(spec, feats, raw, registry, root / "scratch2", SERVE_DAY, seed=1)
    return spec, home, registry, first, second


@pytest.fixture
def registry(built, tmp_path) -> ModelRegistry:
    _, _, source, _, _ = built
    shutil.copytree(source.root, tmp_path / "models")
    return ModelRegistry(tmp_path / "models")


def test_no_model_before_any_champion(tmp_path):
    watcher = ChampionWatcher(ModelRegistry(tmp_path / "models"))
    watcher.check()
    health = watcher.health()
    assert watcher.current is None
    assert health["status"] == "no_model"
    assert (health["serving_version"], health["champion_version"]) == (None, None)
    assert health["load_error"] is None
    assert health["checked_at"] is not None


def test_check_loads_the_champion(built, registry):
    spec, home, _, first, _ = built
    watcher = ChampionWatcher(registry)
    watcher.check()
    assert isinstance(watcher.current, ServedModel)
    assert watcher.current.version == first
    assert watcher.current.info["version"] == first
    assert watcher.current.info["lagged_rates_as_of"] == SERVE_DAY.isoformat()
    health = watcher.health()
    assert health["status"] == "ok"
    assert (health["serving_version"], health["champion_version"]) == (first, first)
    scores = watcher.current.scores(serve_rows(spec, home)[:10])
    assert scores.shape == (10,) and ((scores > 0) & (scores < 1)).all()


def test_an_unchanged_pointer_is_not_loaded_again(registry):
    watcher = ChampionWatcher(registry)
    watcher.check()
    served = watcher.current
    watcher.check()
    assert watcher.current is served


def test_a_new_champion_is_swapped_in(built, registry):
    spec, home, _, first, second = built
    watcher = ChampionWatcher(registry)
    watcher.check()
    old = watcher.current
    registry.promote(second, reason="better")
    watcher.check()
    assert watcher.current.version == second
    assert watcher.current is not old
    assert watcher.health()["status"] == "ok"
    assert watcher.pointer["version"] == second and watcher.pointer["previous"] == first
    records = serve_rows(spec, home)[:20]
    assert old.version == first  # a request holding the old model keeps it
    assert not np.allclose(old.scores(records), watcher.current.scores(records))


def test_a_corrupt_new_version_keeps_the_old_one_and_reports_degraded(built, registry):
    _, _, _, first, second = built
    watcher = ChampionWatcher(registry)
    watcher.check()
    registry.promote(second, reason="better")
    (registry.path(second) / "weights.pt").write_bytes(b"not weights")
    watcher.check()
    assert watcher.current.version == first
    health = watcher.health()
    assert health["status"] == "degraded"
    assert (health["serving_version"], health["champion_version"]) == (first, second)
    assert health["load_error"]["version"] == second
    assert "weights.pt is corrupt" in health["load_error"]["error"]
    registry.promote(first, reason="back", forced=True, action="rollback")
    watcher.check()
    assert watcher.health()["status"] == "ok" and watcher.health()["load_error"] is None


def test_a_version_without_serving_tables_is_refused(built, registry):
    _, _, _, first, second = built
    folder = registry.path(second)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["serving.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "serving.json").unlink()
    watcher = ChampionWatcher(registry)
    watcher.check()
    registry.promote(second, reason="old")
    watcher.check()
    assert watcher.current.version == first
    assert "has no serving.json" in watcher.health()["load_error"]["error"]


def test_a_first_champion_that_cannot_load_serves_nothing(built, registry):
    _, _, _, _, second = built
    registry.promote(second, reason="x")
    (registry.path(second) / "hparams.json").write_text("{}")
    watcher = ChampionWatcher(registry)
    watcher.check()
    assert watcher.current is None
    health = watcher.health()
    assert health["status"] == "no_model"  # nothing served, though a load failed
    assert health["load_error"]["version"] == second


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_a_model_that_gives_no_finite_score_says_so_instead_of_answering_nan(
    built, registry, engine
):
    spec, home, _, _, _ = built
    watcher = ChampionWatcher(registry, engine=engine)
    watcher.check()
    served = watcher.current
    assert (served.net is not None) == (engine == "numpy")
    with torch.no_grad():
        next(served.module.parameters()).fill_(float("nan"))  # a broken model, not a bad input
    if served.net is not None:  # the NumPy export, taken at load time
        served.net.bias[:] = float("nan")
    with pytest.raises(ValueError, match=f"model version {served.version} gave no finite score"):
        served.scores(serve_rows(spec, home)[:3])
