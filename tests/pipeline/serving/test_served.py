"""A version as the serving app holds it: what ``/model`` shows, and one forward pass whichever
engine computes it."""

import numpy as np
import pytest

from pipeline.serving.served import load_served, served_info
from tests.helpers import build_home, serve_rows


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    spec, home, registry = build_home(tmp_path_factory.mktemp("served"))
    return registry, registry.champion_record(), serve_rows(spec, home)


def test_both_engines_give_the_same_scores_and_info(champion):
    registry, record, rows = champion
    numpy_model = load_served(registry, record, "numpy")
    torch_model = load_served(registry, record, "torch")
    a, b = numpy_model.scores(rows[:50]), torch_model.scores(rows[:50])
    assert np.isfinite(a).all() and np.allclose(a, b, atol=1e-6)
    info = numpy_model.info
    assert info["version"] == record["version"] == numpy_model.version
    assert info["threshold"] == numpy_model.threshold and info["window"]


def test_served_info_names_the_pointer_it_came_from():
    record = {"version": "v1", "promoted_at": "2025-01-01T00:00:00+00:00", "reason": "gate"}
    assert served_info(record, {"threshold": 0.3}) == {
        "threshold": 0.3,
        "version": "v1",
        "promoted_at": record["promoted_at"],
        "reason": "gate",
    }
    shadow = {"version": "v2", "since": "2025-01-02T00:00:00+00:00", "reason": "candidate"}
    assert served_info(shadow, {})["promoted_at"] == shadow["since"]
