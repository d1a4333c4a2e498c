"""The NumPy export of the network gives PyTorch's scores to 1e-6: on a trained version and its
real records, and on random networks of every shape the export knows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.model.network import FlywheelNet
from pipeline.serving.forward import NumpyNet
from pipeline.serving.served import load_served
from tests.helpers import build_home, serve_rows


def torch_scores(net: torch.nn.Module, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        return torch.sigmoid(net(torch.from_numpy(cat), torch.from_numpy(num))).double().numpy()


def test_a_trained_version_scores_the_same_in_numpy_and_torch(tmp_path):
    spec, home_dir, registry = build_home(tmp_path)
    record = registry.champion_record()
    fast, slow = load_served(registry, record), load_served(registry, record, engine="torch")
    assert fast.net is not None and slow.net is None
    records = serve_rows(spec, home_dir)
    for rows in (records[:1], records[:7], records):
        assert np.abs(fast.scores(rows) - slow.scores(rows)).max() < 1e-6


@pytest.mark.parametrize(
    ("hidden", "members", "n_numeric"),
    [((64, 32), 3, 6), ((16,), 1, 2), ((), 2, 4), ((8, 8, 4), 2, 0)],
)
def test_random_networks_score_the_same(hidden, members, n_numeric):
    torch.manual_seed(0)
    cards = [5, 12, 3]
    net = FlywheelNet(cards, n_numeric, hidden, dropout=0.5, members=members)
    with torch.no_grad():
        for member in net.members:  # wide tables start at zero: give them something to add
            for table in member.wide_cat:
                table.weight.normal_()
    rng = np.random.default_rng(0)
    cat = np.stack([rng.integers(0, c, 500) for c in cards], axis=1).astype(np.int64)
    num = rng.normal(0, 3, (500, n_numeric)).astype(np.float32)
    exported = NumpyNet.export(net)
    assert np.abs(exported.scores(cat, num) - torch_scores(net, cat, num)).max() < 1e-6
    one = exported.scores(cat[:1], num[:1])
    assert one.shape == (1,) and abs(one[0] - torch_scores(net, cat[:1], num[:1])[0]) < 1e-6


def test_extreme_logits_give_finite_scores():
    net = FlywheelNet([4], 1, (4,), members=1)
    with torch.no_grad():
        net.members[0].wide_num.weight.fill_(1e4)
    exported = NumpyNet.export(net)
    scores = exported.scores(np.zeros((2, 1), np.int64), np.array([[1e3], [-1e3]], np.float32))
    assert np.isfinite(scores).all() and scores[0] == 1.0 and scores[1] == 0.0


def test_an_unknown_layer_is_refused():
    net = FlywheelNet([4], 2, (4,), members=1)
    net.members[0].mlp[1] = torch.nn.Tanh()
    with pytest.raises(ValueError, match="Tanh"):
        NumpyNet.export(net)
