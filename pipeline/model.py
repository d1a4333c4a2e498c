"""The network, its LightningModule and a data module that serves pre-built batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytorch_lightning as pl
import torch
from torch import nn


def embedding_dim(cardinality: int, max_dim: int = 16) -> int:
    """A common rule of thumb: grows slowly with the vocabulary, capped at ``max_dim``."""
    return int(max(2, min(max_dim, round(1.6 * cardinality**0.56))))


class FlywheelNet(nn.Module):
    """Wide-and-deep binary classifier over categorical and scaled numeric inputs.

    The wide part is a logistic regression (one weight per category, one per numeric input);
    the deep part an MLP over embeddings and numeric inputs. Their logits add up.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_numeric: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in cardinalities)
        self.wide_cat = nn.ModuleList(nn.Embedding(c, 1) for c in cardinalities)
        self.wide_num = nn.Linear(n_numeric, 1) if n_numeric else None
        width = sum(e.embedding_dim for e in self.embeddings) + n_numeric
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        for table in self.wide_cat:
            nn.init.zeros_(table.weight)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """``cat``: (batch, n_cat) int64, ``num``: (batch, n_numeric) float32 -> (batch,) logits."""
        parts = [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]  # each (batch, dim_i)
        deep = self.mlp(torch.cat([*parts, num], dim=1)).squeeze(1)  # (batch,)
        wide = sum(w(cat[:, i]).squeeze(1) for i, w in enumerate(self.wide_cat))  # (batch,)
        if self.wide_num is not None:
            wide = wide + self.wide_num(num).squeeze(1)
        return deep + wide


class FlywheelModule(pl.LightningModule):
    """Binary cross-entropy on logits, AdamW; logs ``train_loss`` and ``val_loss`` per epoch."""

    def __init__(
        self,
        cardinalities: list[int],
        n_numeric: int,
        hidden_sizes: list[int],
        dropout: float = 0.1,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        pos_weight: float = 1.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = FlywheelNet(cardinalities, n_numeric, hidden_sizes, dropout)
        self.loss = nn.BCEWithLogitsLoss()
        # Summed on the device and read once per epoch: no host sync on every step.
        self.register_buffer("_val_sum", torch.zeros(2), persistent=False)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.net(cat, num)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        cat, num, y = batch
        return self.loss(self(cat, num), y)

    def on_validation_epoch_start(self) -> None:
        self._val_sum.zero_()

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        cat, num, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(cat, num), y, reduction="sum")
        self._val_sum += torch.stack([loss.detach(), torch.tensor(float(len(y)))])

    def on_validation_epoch_end(self) -> None:
        total, count = self._val_sum
        self.log("val_loss", total / count.clamp(min=1.0), prog_bar=True)

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
    """

    def __init__(
        self,
        tensors: Sequence[torch.Tensor],
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
    ):
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.n = len(self.tensors[0])

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator)
            data = tuple(t[order] for t in self.tensors)  # one gather per epoch
        else:
            data = self.tensors
        for start in range(0, self.n, self.batch_size):
            yield tuple(t[start : start + self.batch_size] for t in data)


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
        return TensorBatches(self.train, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatches | list:
        if self.val is None:
            return []
        return TensorBatches(self.val, max(self.batch_size, 8192), shuffle=False)
