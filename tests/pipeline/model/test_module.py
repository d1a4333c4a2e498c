"""The LightningModule and the pre-built tensor batches (tiny, CPU only)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pipeline.model.module import FlywheelDataModule, FlywheelModule, TensorBatches

HPARAMS = {"cardinalities": [3, 4], "n_numeric": 2, "hidden_sizes": [8], "members": 2}


def _inputs(batch: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack([torch.randint(0, c, (batch,), generator=g) for c in (3, 4)], dim=1)
    num = torch.randn(batch, 2, generator=g)
    y = torch.randint(0, 2, (batch,), generator=g).float()
    return cat, num, y


def test_a_module_built_from_its_hparams_loads_its_state_dict():
    torch.manual_seed(0)
    module = FlywheelModule(**HPARAMS, dropout=0.2, learning_rate=0.5, weight_decay=0.0)
    saved = json.loads(json.dumps(dict(module.hparams)))  # as the registry keeps them
    assert saved == {**HPARAMS, "dropout": 0.2, "learning_rate": 0.5, "weight_decay": 0.0}
    torch.manual_seed(1)  # other random weights, replaced by the loaded ones
    again = FlywheelModule(**saved)
    again.load_state_dict(module.state_dict())  # strict: the same parameters, same shapes
    cat, num, _ = _inputs()
    module.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(module(cat, num), again(cat, num))
    assert "_val_sum" not in module.state_dict()  # a buffer that is not saved


def test_training_loss_is_the_mean_of_the_members_losses():
    torch.manual_seed(0)
    module = FlywheelModule(**{**HPARAMS, "members": 3}, dropout=0.0)
    cat, num, y = _inputs()
    with torch.no_grad():
        losses = [nn.functional.binary_cross_entropy_with_logits(m(cat, num), y)
                  for m in module.net.members]  # fmt: skip
        expected = torch.stack(losses).mean()
        of_the_mean = nn.functional.binary_cross_entropy_with_logits(module(cat, num), y)
        found = module.training_loss(cat, num, y)
    assert torch.allclose(found, expected)
    assert not torch.allclose(found, of_the_mean)  # not the loss of the averaged logits


def test_loss_sum_is_summed_not_averaged():
    module = FlywheelModule(**HPARAMS)
    logits, y = torch.zeros(4), torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert torch.allclose(module.loss_sum(logits, y), 4 * torch.log(torch.tensor(2.0)))


def test_the_optimizer_is_adamw_with_the_hparams():
    module = FlywheelModule(**HPARAMS, learning_rate=0.25, weight_decay=0.5)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 0.25
    assert optimizer.param_groups[0]["weight_decay"] == 0.5


def _rows(n: int = 10):
    ids = torch.arange(n)
    return ids, ids * 10


def test_batches_in_order_without_shuffle():
    batches = TensorBatches(_rows(10), batch_size=4)
    assert len(batches) == 3
    got = list(batches)
    assert [b[0].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [b[1].tolist() for b in got] == [[0, 10, 20, 30], [40, 50, 60, 70], [80, 90]]


@pytest.mark.parametrize(("n", "batch_size", "length"), [(1, 4, 1), (8, 4, 2), (9, 4, 3)])
def test_the_number_of_batches(n, batch_size, length):
    batches = TensorBatches(_rows(n), batch_size)
    assert len(batches) == length == len(list(batches))


def test_shuffle_covers_every_row_once_per_epoch_and_keeps_rows_aligned():
    batches = TensorBatches(_rows(10), batch_size=3, shuffle=True, seed=0)
    epochs = []
    for _ in range(3):
        got = list(batches)
        assert [len(b[0]) for b in got] == [3, 3, 3, 1]
        ids = torch.cat([b[0] for b in got])
        assert sorted(ids.tolist()) == list(range(10))
        assert torch.equal(torch.cat([b[1] for b in got]), ids * 10)
        epochs.append(ids.tolist())
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # a new permutation each pass
    assert epochs[0] != list(range(10))


def test_shuffle_is_reproducible_with_a_seed():
    def order(seed):
        batches = TensorBatches(_rows(20), batch_size=8, shuffle=True, seed=seed)
        return [torch.cat([b[0] for b in batches]).tolist() for _ in range(2)]

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_ddp_shards_split_each_global_batch_between_the_processes():
    """Two processes together take, step by step, the very rows one process alone takes."""
    alone = list(TensorBatches(_rows(11), batch_size=4, shuffle=True, seed=5))
    shards = [list(TensorBatches(_rows(11), 4, shuffle=True, seed=5, rank=r, world=2))
              for r in (0, 1)]  # fmt: skip
    assert len(shards[0]) == len(shards[1]) == len(alone) == 3  # the same steps
    for step, whole in enumerate(alone):
        a, b = shards[0][step], shards[1][step]
        assert set(a[0].tolist()).isdisjoint(b[0].tolist())
        assert sorted([*a[0].tolist(), *b[0].tolist()]) == sorted(whole[0].tolist())
        assert torch.equal(a[1], a[0] * 10) and torch.equal(b[1], b[0] * 10)  # rows aligned
        assert abs(len(a[0]) - len(b[0])) <= 1


def test_ddp_drops_a_last_global_batch_smaller_than_the_processes():
    # 9 rows, batch 4, 3 processes: a last batch of 1 row would leave two processes empty.
    shards = [TensorBatches(_rows(9), 4, rank=r, world=3) for r in range(3)]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert [b[0].tolist() for b in shards[2]] == [[2], [6]]
    assert sum(len(b[0]) for s in shards for b in s) == 8
    with pytest.raises(ValueError, match="rank 2"):
        TensorBatches(_rows(9), 4, rank=2, world=2)


def test_data_module_without_val_has_no_val_batches():
    data = FlywheelDataModule(_rows(10), None, batch_size=4, seed=1)
    assert data.val_dataloader() == []
    train = data.train_dataloader()
    assert isinstance(train, TensorBatches)
    assert (train.shuffle, train.batch_size, len(train)) == (True, 4, 3)
    same_seed = TensorBatches(_rows(10), 4, shuffle=True, seed=1)
    assert [b[0].tolist() for b in train] == [b[0].tolist() for b in same_seed]


def test_data_module_gives_each_ddp_process_its_share_of_the_same_batches():
    class Trainer:  # what the data module reads of Lightning's Trainer
        world_size = 2

        def __init__(self, rank):
            self.global_rank = rank

    def shards(rank):
        data = FlywheelDataModule(_rows(10), None, batch_size=4, seed=1)
        data.trainer = Trainer(rank)
        return [b[0].tolist() for b in data.train_dataloader()]

    alone = [b[0].tolist() for b in FlywheelDataModule(_rows(10), None, 4, 1).train_dataloader()]
    for whole, a, b in zip(alone, shards(0), shards(1), strict=True):
        assert a == whole[0::2] and b == whole[1::2]


def test_data_module_val_batches_are_large_and_in_order():
    data = FlywheelDataModule(_rows(10), _rows(5), batch_size=4)
    val = data.val_dataloader()
    assert (val.shuffle, val.batch_size) == (False, 8192)
    (batch,) = list(val)
    assert batch[0].tolist() == [0, 1, 2, 3, 4]
    assert FlywheelDataModule(_rows(3), _rows(3), 10000).val_dataloader().batch_size == 10000
