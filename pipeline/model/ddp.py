"""Training as a ``torchrun`` job: Lightning's DDP over ``devices * num_nodes`` processes.

The ``trained_model`` asset writes a :class:`TrainRequest` (JSON) and starts, through Dagster
Pipes::

    python -m torch.distributed.run --standalone --nproc_per_node N -m assets.training_worker REQ

Every process reads the same request, chooses the same rows, fits the same preprocessing and
trains the same network (all ensemble members together, as in one process) under DDP: each step
the processes share one global batch of ``batch_size`` rows (see
:class:`pipeline.model.module.TensorBatches`) and average their gradients. Rank 0 alone saves the
version, in the same format as in-process training, and reports it to Dagster with
``dagster_pipes`` (logs per epoch, then the materialization's metadata), from the process entry
:mod:`assets.training_worker` (Pipes is Dagster's side of the job); outside Dagster it writes the
same metadata to ``result_file``.

Importing this module imports neither torch nor Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.home import FlywheelHome
from pipeline.model.params import TrainingError, TrainParams
from pipeline.steps import TrainedVersion, fit_challenger, save_challenger
from pipeline.task import parse_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    """What every process of the job needs: the arguments of :func:`pipeline.steps.train_version`
    as JSON (the task as its mapping, dates as ISO strings, stores as the home's layout)."""

    home: str
    task: dict[str, Any]
    params: dict[str, Any]
    root_dir: str
    end: str | None = None
    extra_file: str | None = None
    extra_weight: float = 1.0
    left_out: dict[str, str] = field(default_factory=dict)
    min_train_days: int = 1
    as_of: str | None = None
    result_file: str | None = None

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def read(cls, path: Path) -> TrainRequest:
        return cls(**json.loads(Path(path).read_text()))

    @property
    def train_params(self) -> TrainParams:
        return TrainParams(**self.params)


def torchrun_command(
    params: TrainParams,
    request: Path,
    python: str = sys.executable,
    rendezvous: str | None = None,
) -> list[str]:
    """The ``torchrun`` command (PyTorch's launcher, as ``python -m torch.distributed.run``) of
    this node: ``params.devices`` processes.

    One node rendezvouses on its own (``--standalone``: a free local port). Several nodes need
    the rendezvous endpoint (``host:port`` of a process every node reaches), and the same command
    started on each node (one pod per node on Kubernetes: docs/operations.md).
    """
    if params.world_size < 2:
        raise ValueError(f"{params.world_size} process: train in-process, not with torchrun")
    cmd = [python, "-m", "torch.distributed.run", f"--nproc_per_node={params.devices}"]
    if params.num_nodes == 1:
        cmd.append("--standalone")
    elif rendezvous is None:
        raise TrainingError(
            f"num_nodes {params.num_nodes}: training on several machines needs a launcher per"
            " node and a rendezvous endpoint (PipesK8sClient, docs/operations.md); on one"
            " machine use devices"
        )
    else:
        cmd += [f"--nnodes={params.num_nodes}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={rendezvous}"]  # fmt: skip
    return [*cmd, "-m", "assets.training_worker", str(request)]


def version_metadata(result: TrainedVersion) -> dict[str, dict[str, Any]]:
    """The ``trained_model`` asset's metadata, in Dagster Pipes' form (``raw_value``, ``type``):
    the asset shows the same whether it trained in-process or under torchrun."""
    window, training = result.window.to_dict(), result.training

    def typed(value: Any, kind: str = "__infer__") -> dict[str, Any]:
        return {"raw_value": value, "type": kind}

    return {
        "version": typed(result.version, "text"),
        "path": typed(str(result.path), "path"),
        "train_window": typed(f"{window['train_start']}..{window['train_end']}", "text"),
        "holdout_window": typed(f"{window['holdout_start']}..{window['holdout_end']}", "text"),
        "train_days_missing": typed(result.train_days_missing, "json"),
        "days_left_out": typed(result.days_left_out, "json"),
        "dagster/row_count": typed(result.rows, "int"),
        "val_rows": typed(result.val_rows, "int"),
        "feedback_rows": typed(result.feedback_rows, "int"),
        "feedback_superseded": typed(training["feedback_superseded"], "int"),
        "holdout_batch_rows": typed(training["holdout_rows"]["batch"], "int"),
        "holdout_feedback_rows": typed(training["holdout_rows"]["feedback"], "int"),
        "epochs_run": typed(result.epochs_run, "int"),
        "refit_epochs": typed(training["refit_epochs"], "int"),
        "best_val_loss": typed(result.best_val_loss),
        "threshold": typed(result.threshold, "float"),
        "parameter_count": typed(result.parameter_count, "int"),
        "training_seconds": typed(result.seconds, "float"),
        "world_size": typed(TrainParams(**training["params"]).world_size, "int"),
        "hyperparameters": typed(training["params"], "json"),
    }


def run_request(request: TrainRequest, on_epoch=None) -> TrainedVersion | None:
    """Trains as one process of the job; rank 0 saves and returns the version, others None."""
    home = FlywheelHome.at(request.home)
    spec = parse_task(request.task, origin="<train request>")
    extra = pd.read_parquet(request.extra_file) if request.extra_file else None

    def day(text: str | None) -> dt.date | None:
        return dt.date.fromisoformat(text) if text else None

    fitted = fit_challenger(
        spec, home.partitions("cleaned_features"), request.train_params, Path(request.root_dir),
        end=day(request.end), on_epoch=on_epoch, extra=extra, extra_weight=request.extra_weight,
        left_out=request.left_out, min_train_days=request.min_train_days, as_of=day(request.as_of),
    )  # fmt: skip
    if fitted.outcome.rank != 0:
        return None
    return save_challenger(fitted, spec, home.registry(), home.partitions("raw_data"))


def epoch_logger(logger: logging.Logger):
    def on_epoch(row: dict[str, float]) -> None:
        logger.info(f"epoch {row['epoch']}: val_loss {row['val_loss']:.4f}")

    return on_epoch


def finish(
    request: TrainRequest, result: TrainedVersion | None, logger: logging.Logger
) -> dict[str, dict[str, Any]]:
    """Rank 0's last step: logs the saved version and returns its metadata (written to
    ``result_file`` too, when the request names one)."""
    if result is None:
        raise RuntimeError("rank 0 trained but saved no version")
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_initialized() else 1  # the job's real process group
    logger.info(f"saved {result.version}, trained by {world} DDP processes")
    metadata = version_metadata(result)
    if request.result_file:
        Path(request.result_file).write_text(json.dumps(metadata, indent=1))
    return metadata
