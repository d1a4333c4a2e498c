import numpy as np

from pipeline.model.plots import plots


def test_plots_are_png():
    y = np.array([0, 1, 0, 1, 1], dtype=float)
    out = plots(y, {"a": np.array([0.1, 0.8, 0.3, 0.6, 0.9])})
    assert set(out) == {"roc", "precision_recall", "calibration"}
    for png in out.values():
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
