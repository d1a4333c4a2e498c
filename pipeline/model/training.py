"""Training: a time-ordered validation slice, early stopping, best weights, a threshold, and a
refit on every row for the epochs early stopping chose."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from pipeline.model.features import Preprocessor
from pipeline.model.metrics import best_f1_threshold
from pipeline.model.module import FlywheelDataModule, FlywheelModule
from pipeline.model.params import TrainingError, TrainParams
from pipeline.task import LABEL_COLUMN, TaskSpec

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass
class TrainOutcome:
    module: FlywheelModule
    preprocessor: Preprocessor
    threshold: float
    epochs_run: int
    best_val_loss: float | None
    train_rows: int
    val_rows: int
    seconds: float
    history: list[dict[str, float]]
    # Epochs of the refit on every row (0: the early-stopped weights are the model).
    refit_epochs: int = 0
    # This process's rank in a DDP job (0 alone): only rank 0 saves the version.
    rank: int = 0

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


class _BestWeights(pl.Callback):
    """Keeps the weights of the epoch with the lowest ``val_loss`` in memory (no files)."""

    def __init__(self, on_epoch: Callable[[dict[str, float]], None] | None = None):
        self.best: float | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.on_epoch = on_epoch

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        self.history.append({"epoch": trainer.current_epoch, "val_loss": loss})
        if self.best is None or loss < self.best:
            self.best = loss
            self.state = copy.deepcopy(module.state_dict())
        if self.on_epoch:
            self.on_epoch(self.history[-1])


def make_trainer(
    params: TrainParams, callbacks: list[pl.Callback], root_dir: Path, validate: bool = True
) -> pl.Trainer:
    """The Trainer that training uses (the overhead benchmark times this very one).

    Everything that would run around each step and is not needed here is off: no logger, no
    checkpoint files, no progress bar, no model summary, no sanity validation. Validation runs
    once per epoch (``validate``), or not at all.

    With more than one process (``params.world_size``) the strategy "auto" is Lightning's DDP
    (gloo on CPU, NCCL on GPUs); the processes must already exist, started by ``torchrun``
    (:mod:`pipeline.model.ddp`), which Lightning detects from its environment variables.
    """
    strategy = params.strategy
    if strategy == "auto" and params.world_size > 1:
        strategy = "ddp"
    return pl.Trainer(
        max_epochs=params.epochs,
        accelerator=params.accelerator,
        devices=params.devices,
        num_nodes=params.num_nodes,
        strategy=strategy,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if validate else 0,
        callbacks=callbacks,
        default_root_dir=str(root_dir),
    )


def time_split(frame: pd.DataFrame, timestamp: str, val_fraction: float):
    """Splits rows by time: the latest ``val_fraction`` of them is the validation slice."""
    ordered = frame.sort_values(timestamp, kind="stable")
    n_val = int(len(ordered) * val_fraction)
    if n_val == 0 or n_val == len(ordered):
        return ordered, ordered.iloc[0:0]
    return ordered.iloc[:-n_val], ordered.iloc[-n_val:]


def build_module(cardinalities: list[int], n_numeric: int, params: TrainParams) -> FlywheelModule:
    """A fresh module for the given input sizes and hyperparameters."""
    return FlywheelModule(
        cardinalities=list(cardinalities),
        n_numeric=n_numeric,
        hidden_sizes=list(params.hidden_sizes),
        dropout=params.dropout,
        learning_rate=params.learning_rate,
        weight_decay=params.weight_decay,
        members=params.members,
    )


def fit_module(
    module: FlywheelModule,
    train: tuple[torch.Tensor, ...],
    val: tuple[torch.Tensor, ...] | None,
    params: TrainParams,
    root_dir: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[_BestWeights, int]:
    """Fits ``module`` on pre-built ``(cat, num, y)`` tensors and loads the best epoch's weights.

    This is the whole Lightning part of training (the overhead benchmark times exactly this).
    Returns the callback that kept the best weights (with the per-epoch history) and the number
    of epochs run.
    """
    best = _BestWeights(on_epoch)
    callbacks: list[pl.Callback] = [best]
    if val is not None:
        callbacks.append(
            pl.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, mode="min")
        )
    trainer = make_trainer(params, callbacks, root_dir, validate=val is not None)
    data = FlywheelDataModule(train, val, params.batch_size, seed=params.seed)
    trainer.fit(module, datamodule=data)
    if best.state is not None:
        module.load_state_dict(best.state)
    return best, trainer.current_epoch


def train_model(
    frame: pd.DataFrame,
    spec: TaskSpec,
    params: TrainParams,
    root_dir: Path,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    extra: pd.DataFrame | None = None,
    extra_weight: float = 1.0,
) -> TrainOutcome:
    """Trains on ``frame`` (cleaned rows of the training days) and returns the best model.

    ``extra`` (cleaned rows such as user feedback) joins the training part only, each row
    counting ``extra_weight`` times; preprocessing and validation stay on ``frame``.

    Raises:
        TrainingError: when there are no rows, or only one class.
    """
    if frame.empty:
        raise TrainingError("no training rows: the training window holds no cleaned rows")
    if frame[LABEL_COLUMN].nunique() < 2:
        raise TrainingError(
            f"training rows hold only label {int(frame[LABEL_COLUMN].iloc[0])}: need both classes"
        )
    started = time.perf_counter()
    pl.seed_everything(params.seed, workers=True, verbose=False)
    fit_part, val_part = time_split(frame, spec.timestamp, params.val_fraction)
    prep = Preprocessor.for_task(spec).fit(frame)
    if extra is not None and len(extra) and extra_weight > 0:
        # Whole copies per row, plus one more for a seeded share of rows for the fraction.
        share = np.random.default_rng(params.seed).random(len(extra)) < extra_weight % 1
        copies = (np.floor(extra_weight) + share).astype(int)
        rows = extra[list(frame.columns)].iloc[np.repeat(np.arange(len(extra)), copies)]
        fit_part = pd.concat([fit_part, rows], ignore_index=True)

    def tensors(part: pd.DataFrame) -> tuple[torch.Tensor, ...]:
        cat, num = prep.transform(part)
        return cat, num, torch.from_numpy(part[LABEL_COLUMN].to_numpy(dtype=np.float32))

    train_t = tensors(fit_part)
    val_t = tensors(val_part) if len(val_part) else None
    module = build_module(prep.cardinalities, prep.n_numeric_inputs, params)
    best, epochs_run = fit_module(module, train_t, val_t, params, root_dir, on_epoch)
    module = module.cpu().eval()
    module.net.fill_unseen(train_t[0])

    threshold, refit_epochs = 0.5, 0
    if val_t is not None:
        # The threshold comes from rows the early-stopped model never trained on.
        scores = predict_scores(module, val_t[0], val_t[1])
        threshold = best_f1_threshold(val_t[2].numpy(), scores)
        if params.refit and best.history:
            refit_epochs = 1 + min(best.history, key=lambda h: h["val_loss"])["epoch"]
            rows = tuple(torch.cat(pair) for pair in zip(train_t, val_t, strict=True))
            module = refit(prep, rows, params, refit_epochs, root_dir)
    return TrainOutcome(
        module=module,
        preprocessor=prep,
        threshold=threshold,
        epochs_run=epochs_run,
        best_val_loss=best.best,
        train_rows=len(fit_part),
        val_rows=len(val_part),
        seconds=time.perf_counter() - started,
        history=best.history,
        refit_epochs=refit_epochs,
        rank=torch.distributed.get_rank() if torch.distributed.is_initialized() else 0,
    )


def refit(
    prep: Preprocessor,
    rows: tuple[torch.Tensor, ...],
    params: TrainParams,
    epochs: int,
    root_dir: Path,
) -> FlywheelModule:
    """A fresh module trained on ``rows`` (training and validation tensors) for ``epochs``.

    The same seed and hyperparameters as the early-stopped fit; no validation, so the last
    epoch's weights are the model.
    """
    pl.seed_everything(params.seed, workers=True, verbose=False)
    module = build_module(prep.cardinalities, prep.n_numeric_inputs, params)
    fit_module(module, rows, None, replace(params, epochs=epochs), root_dir)
    module = module.cpu().eval()
    module.net.fill_unseen(rows[0])
    return module


@torch.no_grad()
def predict_scores(
    module: torch.nn.Module, cat: torch.Tensor, num: torch.Tensor, batch_size: int = 65536
) -> np.ndarray:
    """Probabilities of the positive class for pre-built tensors."""
    module.eval()
    out = [
        torch.sigmoid(module(cat[i : i + batch_size], num[i : i + batch_size]))
        for i in range(0, len(cat), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def predict_frame(module: torch.nn.Module, prep: Preprocessor, frame: pd.DataFrame) -> np.ndarray:
    """Probabilities for cleaned rows, through the model's own preprocessing."""
    cat, num = prep.transform(frame)
    return predict_scores(module, cat, num)


@torch.no_grad()
def predict_members(
    module: torch.nn.Module, prep: Preprocessor, frame: pd.DataFrame, batch_size: int = 65536
) -> np.ndarray:
    """``(rows, members)`` probabilities of each ensemble member alone, for cleaned rows."""
    cat, num = prep.transform(frame)
    module.eval()
    out = [
        torch.sigmoid(module.net.member_logits(cat[i : i + batch_size], num[i : i + batch_size]))
        for i in range(0, len(cat), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros((0, len(module.net.members)), np.float32)
