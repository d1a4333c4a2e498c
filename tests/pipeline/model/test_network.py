"""The network: an ensemble of wide-and-deep binary classifiers (tiny, CPU only)."""

from __future__ import annotations

import pytest
import torch

from pipeline.model.network import FlywheelNet, WideDeep, embedding_dim


def _inputs(batch: int, cardinalities=(3, 10), n_numeric: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (batch,), generator=g) for c in cardinalities], dim=1)
    return cat, torch.randn(batch, n_numeric, generator=g)


@pytest.mark.parametrize(
    ("cardinality", "max_dim", "expected"),
    [
        (1, 16, 2),  # round(1.6) = 2, and never below 2
        (2, 16, 2),  # round(2.36)
        (3, 16, 3),  # round(2.96)
        (10, 16, 6),  # round(5.81)
        (100, 16, 16),  # round(21.09), capped
        (100, 4, 4),
        (1000, 100, 77),  # a larger cap: round(1.6 * 1000**0.56) = round(77.26)
    ],
)
def test_embedding_dim_rule(cardinality, max_dim, expected):
    assert embedding_dim(cardinality, max_dim) == expected


def test_wide_deep_output_shape_and_layers():
    torch.manual_seed(0)
    net = WideDeep([3, 10], n_numeric=2, hidden_sizes=[8, 4])
    cat, num = _inputs(5)
    assert net(cat, num).shape == (5,)
    assert [e.embedding_dim for e in net.embeddings] == [3, 6]
    assert net.mlp[0].in_features == 3 + 6 + 2
    assert [m.out_features for m in net.mlp if isinstance(m, torch.nn.Linear)] == [8, 4, 1]
    assert all((t.weight == 0).all() for t in net.wide_cat)  # the wide part starts at zero


def test_wide_deep_without_numeric_inputs():
    net = WideDeep([4], n_numeric=0, hidden_sizes=[])
    assert net.wide_num is None
    cat, num = _inputs(3, cardinalities=(4,), n_numeric=0)
    assert net(cat, num).shape == (3,)


def test_wide_deep_logits_are_the_deep_plus_the_wide_part():
    torch.manual_seed(1)
    net = WideDeep([3], n_numeric=1, hidden_sizes=[4], dropout=0.0).eval()
    cat, num = _inputs(6, cardinalities=(3,), n_numeric=1)
    with torch.no_grad():
        net.wide_cat[0].weight.copy_(torch.tensor([[1.0], [2.0], [3.0]]))
        deep = net.mlp(torch.cat([net.embeddings[0](cat[:, 0]), num], dim=1)).squeeze(1)
        wide = net.wide_cat[0](cat[:, 0]).squeeze(1) + net.wide_num(num).squeeze(1)
        assert torch.allclose(net(cat, num), deep + wide)
        assert torch.allclose(wide - net.wide_num(num).squeeze(1), cat[:, 0].float() + 1)


@pytest.mark.parametrize("members", [1, 3])
def test_flywheel_net_shapes_and_members_are_averaged(members):
    torch.manual_seed(0)
    net = FlywheelNet([3, 10], 2, hidden_sizes=[8], members=members).eval()
    cat, num = _inputs(7)
    with torch.no_grad():
        per_member = net.member_logits(cat, num)
        assert per_member.shape == (7, members)
        for i, member in enumerate(net.members):
            assert torch.allclose(per_member[:, i], member(cat, num))
        assert net(cat, num).shape == (7,)
        assert torch.allclose(net(cat, num), per_member.mean(dim=1))


def test_members_start_from_their_own_weights():
    torch.manual_seed(0)
    net = FlywheelNet([3], 1, hidden_sizes=[4], members=2)
    first, second = (m.mlp[0].weight for m in net.members)
    assert not torch.equal(first, second)
    assert len(net.state_dict()) == 2 * len(net.members[0].state_dict())  # one state_dict


@pytest.mark.parametrize("members", [0, -1])
def test_members_must_be_at_least_one(members):
    with pytest.raises(ValueError, match=f"members must be at least 1, got {members}"):
        FlywheelNet([3], 1, members=members)


def test_fill_unseen_gives_unseen_codes_the_row_weighted_mean():
    torch.manual_seed(0)
    net = WideDeep([4], n_numeric=1, hidden_sizes=[4])
    before = net.embeddings[0].weight.detach().clone()
    net.wide_cat[0].weight.data[:, 0] = torch.tensor([0.0, 1.0, 3.0, 0.0])
    counts = [torch.tensor([0, 1, 3, 0])]  # codes 0 and 3 had no training rows
    net.fill_unseen(counts)
    mean = (before[1] * 1 + before[2] * 3) / 4
    weight = net.embeddings[0].weight.detach()
    assert torch.equal(weight[1:3], before[1:3])  # seen codes keep what they learned
    assert torch.allclose(weight[0], mean) and torch.allclose(weight[3], mean)
    assert net.wide_cat[0].weight[:, 0].tolist() == [2.5, 1.0, 3.0, 2.5]


def test_fill_unseen_counts_codes_for_every_member():
    net = FlywheelNet([3], n_numeric=1, hidden_sizes=[4], members=2)
    cat = torch.tensor([[1], [1], [2]])  # code 0 unseen
    net.fill_unseen(cat)
    for member in net.members:
        weight = member.embeddings[0].weight
        assert torch.allclose(weight[0], (2 * weight[1] + weight[2]) / 3)
