"""Lightning fit vs a plain PyTorch loop: what does Lightning cost around the same training?

Side A is the real training path, ``pipeline.model.training.fit_module`` (the Trainer of
``make_trainer``, the FlywheelModule, the FlywheelDataModule and the best-weights and
early-stopping callbacks). Side B is a plain loop over the very same network: same initial
weights, same TensorBatches (same order, same seed), same AdamW, same loss, the same validation
pass after every epoch and the same copy of the best weights. Both sides train on real cleaned
flights rows (2013 days through ``read_day`` and ``clean_day``), split by time as training does.

    python benchmarks/training_overhead.py          # 200k rows, 3 epochs, 5 repeats
    python benchmarks/training_overhead.py --quick  # smoke run
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from _common import (
    DEFAULT_RESULTS_DIR,
    clean_days,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)

from pipeline.model.features import Preprocessor
from pipeline.model.module import FlywheelModule, TensorBatches
from pipeline.model.params import TrainParams
from pipeline.model.training import build_module, fit_module, time_split
from pipeline.task import LABEL_COLUMN, load_task

GOAL_RATIO = 1.10
FIRST_DAY = dt.date(2013, 1, 8)  # the first day with a full 7-day history inside 2013
ROWS_PER_DAY = 800  # under the 2013 average (about 920), so that enough days are cleaned

Tensors = tuple[torch.Tensor, ...]


def flights_tensors(rows: int, params: TrainParams) -> tuple[Tensors, Tensors, list[int], int]:
    """The first ``rows`` cleaned flights rows of 2013 as training and validation tensors."""
    spec = load_task()
    n_days = -(-rows // ROWS_PER_DAY)
    frame = clean_days(spec, FIRST_DAY, FIRST_DAY + dt.timedelta(days=n_days - 1))
    if len(frame) < rows:
        raise RuntimeError(f"only {len(frame)} cleaned rows in {n_days} days; wanted {rows}")
    frame = frame.sort_values(spec.timestamp, kind="stable").iloc[:rows]
    fit_part, val_part = time_split(frame, spec.timestamp, params.val_fraction)
    prep = Preprocessor.for_task(spec).fit(frame)

    def tensors(part) -> Tensors:
        cat, num = prep.transform(part)
        return cat, num, torch.from_numpy(part[LABEL_COLUMN].to_numpy(dtype=np.float32))

    return tensors(fit_part), tensors(val_part), prep.cardinalities, prep.n_numeric_inputs


def lightning_fit(module: FlywheelModule, train: Tensors, val: Tensors, params: TrainParams):
    """Side A: the real training path."""
    with tempfile.TemporaryDirectory() as root:
        best, _ = fit_module(module, train, val, params, Path(root))
    return best.best


@torch.no_grad()
def _val_loss(module: FlywheelModule, val: Tensors, batch_size: int) -> float:
    total = torch.zeros(())
    for cat, num, y in TensorBatches(val, max(batch_size, 8192)):
        total += module.loss_sum(module(cat, num), y)
    return float(total / len(val[0]))


def plain_fit(module: FlywheelModule, train: Tensors, val: Tensors, params: TrainParams):
    """Side B: the same training written as a plain PyTorch loop."""
    optimizer = module.configure_optimizers()
    batches = TensorBatches(train, params.batch_size, shuffle=True, seed=params.seed)
    best, best_state = None, None
    for _ in range(params.epochs):
        module.train()
        for cat, num, y in batches:
            loss = module.training_loss(cat, num, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        module.eval()
        with torch.inference_mode():
            val_loss = _val_loss(module, val, params.batch_size)
        if best is None or val_loss < best:
            best, best_state = val_loss, copy.deepcopy(module.state_dict())
    module.load_state_dict(best_state)
    return best


def timed(fn, data, params: TrainParams) -> tuple[float, float, FlywheelModule]:
    """Seconds for one side, from seeding and a fresh module to the best weights loaded."""
    train, val, cardinalities, n_numeric = data
    pl.seed_everything(params.seed, workers=True, verbose=False)
    module = build_module(cardinalities, n_numeric, params)
    started = time.perf_counter()
    best = fn(module, train, val, params)
    return time.perf_counter() - started, best, module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, 2 repeats")
    parser.add_argument("--rows", type=int, default=None, help="rows (default 200000)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 3)")
    parser.add_argument("--repeats", type=int, default=None, help="A/B pairs (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared machine, spinning thread pools of busy"
        " cores multiply the spread; the ratio is about the work around each step)",
    )
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    rows = args.rows or (10_000 if args.quick else 200_000)
    epochs = args.epochs or (1 if args.quick else 3)
    repeats = args.repeats or (2 if args.quick else 5)

    defaults = TrainParams()
    # patience = epochs: early stopping is wired in as in training but never cuts a run short.
    params = dataclasses.replace(defaults, epochs=epochs, patience=epochs)
    env = environment()
    torch.set_num_threads(args.threads)
    env["torch_threads"] = args.threads
    what = (
        f"Lightning fit (A) vs plain PyTorch loop (B), {rows // 1000}k real flights rows,"
        f" batch {params.batch_size}, {epochs} epochs, validation every epoch,"
        f" {args.threads} torch thread(s)"
    )
    print(what)
    print(describe_environment(env))
    started = time.perf_counter()
    data = flights_tensors(rows, params)
    train, val = data[0], data[1]
    print(
        f"data: {len(train[0])} training + {len(val[0])} validation rows,"
        f" {train[0].shape[1]} categorical + {train[1].shape[1]} numeric inputs,"
        f" {len(TensorBatches(train, params.batch_size))} steps per epoch"
        f" (built in {time.perf_counter() - started:.1f} s)"
    )

    # Warm-up: imports, first allocations, Lightning's first Trainer.
    warm = dataclasses.replace(params, epochs=1, patience=1)
    timed(lightning_fit, data, warm)
    timed(plain_fit, data, warm)

    a_times, b_times, a_losses, b_losses, weight_diffs = [], [], [], [], []
    for i in range(repeats):
        a_sec, a_loss, a_module = timed(lightning_fit, data, params)
        b_sec, b_loss, b_module = timed(plain_fit, data, params)
        diff = max(
            float((a_module.state_dict()[k] - v).abs().max())
            for k, v in b_module.state_dict().items()
        )
        a_times.append(a_sec)
        b_times.append(b_sec)
        a_losses.append(a_loss)
        b_losses.append(b_loss)
        weight_diffs.append(diff)
        print(
            f"repeat {i + 1}/{repeats}: Lightning {a_sec:.2f} s, plain {b_sec:.2f} s,"
            f" best val loss {a_loss:.5f} vs {b_loss:.5f}, max weight difference {diff:.2e}"
        )

    a, b = spread(a_times), spread(b_times)
    ratios = [x / y for x, y in zip(a_times, b_times, strict=True)]
    ratio = a["median"] / b["median"]
    steps = epochs * len(TensorBatches(train, params.batch_size))
    per_step_ms = 1000 * (a["median"] - b["median"]) / steps
    met = ratio <= GOAL_RATIO
    path = write_results(
        args.results_dir,
        "training_overhead",
        {
            "compared": what,
            "quick": args.quick,
            "environment": env,
            "params": params.to_dict(),
            "train_rows": len(train[0]),
            "val_rows": len(val[0]),
            "steps": steps,
            "lightning_seconds": a_times,
            "plain_seconds": b_times,
            "pair_ratios": ratios,
            "lightning": a,
            "plain": b,
            "ratio_of_medians": ratio,
            "overhead_ms_per_step": per_step_ms,
            "best_val_loss": {"lightning": a_losses, "plain": b_losses},
            "max_weight_difference": weight_diffs,
            "goal": f"<= {GOAL_RATIO}",
            "met": met,
        },
    )
    print(
        f"Lightning costs {per_step_ms:.2f} ms per optimizer step over the plain loop;"
        f" pair ratios {min(ratios):.3f}-{max(ratios):.3f}. Full numbers: {path}"
    )
    print()
    print_table(
        [
            {
                "measure": f"fit seconds, median (min-max) of {repeats}",
                "A": f"{a['median']:.2f} ({a['min']:.2f}-{a['max']:.2f}) Lightning",
                "B": f"{b['median']:.2f} ({b['min']:.2f}-{b['max']:.2f}) plain",
                "ratio": f"{ratio:.3f}",
                "goal": f"<= {GOAL_RATIO:.2f}",
                "met": "yes" if met else "no",
            }
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
