"""The LightningModule that trains :class:`~pipeline.model.network.FlywheelNet`, and a data
module that serves pre-built tensors as batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from pipeline.model.network import FlywheelNet


class FlywheelModule(pl.LightningModule):
    """Binary cross-entropy on logits, AdamW; logs ``val_loss`` once per epoch.

    Optimization is manual (zero_grad, backward, step in ``training_step``): it is the same
    AdamW step as Lightning's automatic optimization without the closure machinery around it,
    and nothing is logged per step, so that the Trainer adds as little as possible to each step.
    """

    def __init__(
        self,
        cardinalities: list[int],
        n_numeric: int,
        hidden_sizes: list[int],
        dropout: float = 0.1,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        members: int = 1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = FlywheelNet(cardinalities, n_numeric, hidden_sizes, dropout, members)
        self.loss = nn.BCEWithLogitsLoss()
        # Summed on the device and read once per epoch: no host sync on every step.
        self.register_buffer("_val_sum", torch.zeros(2), persistent=False)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.net(cat, num)

    def loss_sum(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed (not averaged) binary cross-entropy, for exact means over uneven batches."""
        return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")

    def training_loss(self, cat: torch.Tensor, num: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of the members' own losses (not the loss of their mean: they stay independent)."""
        logits = self.net.member_logits(cat, num)  # (batch, members)
        return self.loss(logits, y.unsqueeze(1).expand_as(logits))

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        cat, num, y = batch  # (batch, n_cat), (batch, n_numeric), (batch,)
        optimizer = self.optimizers()
        loss = self.training_loss(cat, num, y)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sum.zero_()

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        cat, num, y = batch
        loss = self.loss_sum(self(cat, num), y)
        self._val_sum += torch.stack([loss.detach(), torch.tensor(float(len(y)))])

    def on_validation_epoch_end(self) -> None:
        total, count = self._val_sum
        # The same value in every DDP process (see val_dataloader); sync_dist keeps it one
        # value by construction, and is free with one process.
        self.log("val_loss", total / count.clamp(min=1.0), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )


class TensorBatches:
    """Pre-built tensors served as batches: one gather per batch, no per-row Python work.

    Iterable any number of times; with ``shuffle`` each pass draws a new permutation from its own
    seeded generator, so training is reproducible.

    Under DDP (``world`` processes) every process draws the same permutation and cuts the same
    global batches of ``batch_size`` rows; process ``rank`` takes rows ``rank, rank + world, ...``
    of each, so that one step of all processes together sees exactly the rows that one process
    alone would see in that step. This is a ``DistributedSampler`` for pre-built tensors (Lightning
    injects its sampler into ``DataLoader``\ s only). A last global batch of fewer rows than there
    are processes is dropped: a process with an empty batch would make the mean loss NaN, and
    every process must take the same number of steps.
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} processes")
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.n = len(self.tensors[0])
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest >= self.world else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator)
            data = tuple(t[order] for t in self.tensors)  # one gather per epoch
        else:
            data = self.tensors
        for k in range(len(self)):
            start = k * self.batch_size
            stop = min(start + self.batch_size, self.n)
            yield tuple(t[start + self.rank : stop : self.world] for t in data)


class FlywheelDataModule(pl.LightningDataModule):
    """Training and validation tensors, already built, served as :class:`TensorBatches`."""

    def __init__(
        self,
        train: Sequence[torch.Tensor],
        val: Sequence[torch.Tensor] | None,
        batch_size: int,
        seed: int = 0,
    ):
        super().__init__()
        self.train = tuple(train)
        self.val = tuple(val) if val is not None else None
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> TensorBatches:
        # The global batch is batch_size in any number of processes: each takes its share.
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        return TensorBatches(
            self.train, self.batch_size, shuffle=True, seed=self.seed, rank=rank, world=world
        )

    def val_dataloader(self) -> TensorBatches | list:
        # Not sharded: every process validates on all rows with the same (synchronized)
        # weights, so val_loss, the best epoch and early stopping agree in every process.
        if self.val is None:
            return []
        return TensorBatches(self.val, max(self.batch_size, 8192), shuffle=False)
