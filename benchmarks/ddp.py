"""Distributed training: 2 DDP processes (torchrun, gloo) vs 1 process, same rows, same batch.

Side A is training as the ``trained_model`` asset runs it with one process: ``train_version``
in the calling process. Side B is what the asset runs with ``devices=2``: the torchrun job of
``pipeline.model.ddp`` (PyTorch's launcher, Lightning's DDP over gloo, the same global batch of
``batch_size`` rows split between the two processes, the same seed), timed from the launch to the
saved version, as a subprocess. Both train on the replayed 2013 flights (the built-in task) and
are scored on the same holdout days. A is timed after a warm-up in the same process (imports and
first allocations are paid), B pays its processes' start, imports and rendezvous every time: that
launch cost is the question on 2 cores, where no speed-up is expected (torchrun also gives each
process one thread, A has the machine's default).

    python benchmarks/ddp.py          # 28 training days, 5 epochs, 5 A/B pairs
    python benchmarks/ddp.py --quick  # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks._common import (
    DEFAULT_RESULTS_DIR,
    describe_environment,
    environment,
    print_table,
    spread,
    write_results,
)
from pipeline.data.sources import make_source
from pipeline.evaluation import evaluate_version
from pipeline.home import FlywheelHome
from pipeline.model.ddp import TrainRequest, torchrun_command
from pipeline.model.params import TrainParams
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import TaskSpec, load_task

ROOT = Path(__file__).resolve().parents[1]
END = dt.date(2025, 5, 20)  # replays May 2013 (as tests/pipeline/test_gate.py)
TOLERANCE = 0.01  # the test's tolerance on ROC-AUC and log loss (tests/pipeline/model/test_ddp.py)


def build_home(home: FlywheelHome, spec: TaskSpec, days: int) -> None:
    """raw_data and cleaned_features of ``days`` days ending at END, as the pipeline makes them."""
    source = make_source(spec)
    raw, feats = home.partitions("raw_data"), home.partitions("cleaned_features")
    wanted = [END - dt.timedelta(days=k) for k in range(days - 1, -1, -1)]
    lead = [wanted[0] - dt.timedelta(days=k) for k in range(spec.lag_reach_days, 0, -1)]
    for day in [*lead, *wanted]:
        ingest_day(source, raw, day)
    for day in wanted:
        build_features_day(spec, raw, feats, day)


def one_process(home: FlywheelHome, spec: TaskSpec, params: TrainParams, scratch: Path):
    """Side A: seconds and the version."""
    started = time.perf_counter()
    result = train_version(spec, home.partitions("cleaned_features"), home.registry(), params,
                           scratch, end=END, raw=home.partitions("raw_data"))  # fmt: skip
    return time.perf_counter() - started, result.version


def two_processes(home: FlywheelHome, spec: TaskSpec, params: TrainParams, scratch: Path):
    """Side B: seconds from the launch to the saved version, and the version."""
    scratch.mkdir(parents=True, exist_ok=True)
    request = TrainRequest(home=str(home.root), task=spec.to_mapping(), params=params.to_dict(),
                           root_dir=str(scratch), end=END.isoformat(),
                           result_file=str(scratch / "result.json"))  # fmt: skip
    path = request.write(scratch / "request.json")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    proc = subprocess.run(torchrun_command(params, path), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the torchrun job failed:\n{proc.stderr[-3000:]}")
    metadata = json.loads((scratch / "result.json").read_text())
    return seconds, metadata["version"]["raw_value"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 days, 1 epoch, 1 pair, no warm-up"
    )
    parser.add_argument("--window-days", type=int, default=None, help="training days (28)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 5)")
    parser.add_argument("--repeats", type=int, default=None, help="A/B pairs (default 5)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="A's torch threads (default 1, as torchrun gives each of B's processes: on a shared"
        " machine the spinning thread pools of busy cores multiply A's time several times)",
    )
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    window = args.window_days or (4 if args.quick else 28)
    epochs = args.epochs or (1 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 5)
    holdout = 2 if args.quick else 7
    small = {"hidden_sizes": [16], "members": 1} if args.quick else {}
    # patience = epochs: early stopping is wired in but never cuts a run short.
    one = TrainParams(epochs=epochs, patience=epochs, window_days=window, holdout_days=holdout,
                      **small)  # fmt: skip
    two = dataclasses.replace(one, devices=2)  # the same global batch, the same seed
    env = environment()
    env["torch_threads"] = {"A": args.threads, "B": "1 per process (torchrun)"}
    what = (
        f"1 process in-process (A) vs 2 DDP processes under torchrun, gloo (B): {window} training"
        f" + {holdout} holdout days of real flights, global batch {one.batch_size},"
        f" {epochs} epochs, {one.members} members, seed {one.seed}, A with {args.threads} torch"
        " thread(s), B with 1 per process"
    )
    print(what)
    print(describe_environment(env))
    spec = load_task()
    with tempfile.TemporaryDirectory() as tmp:
        home = FlywheelHome.at(Path(tmp) / "home")
        started = time.perf_counter()
        build_home(home, spec, window + holdout)
        print(f"data: {window + holdout} days built in {time.perf_counter() - started:.1f} s")
        if not args.quick:  # warm-up: A's imports and first allocations, B's files in cache
            warm = dataclasses.replace(one, epochs=1, patience=1)
            one_process(home, spec, warm, Path(tmp) / "warm-a")
            two_processes(home, spec, dataclasses.replace(warm, devices=2), Path(tmp) / "warm-b")

        a_times, b_times, a_train, b_train, versions = [], [], [], [], {"A": [], "B": []}
        for i in range(repeats):
            a_sec, a_version = one_process(home, spec, one, Path(tmp) / f"a{i}")
            b_sec, b_version = two_processes(home, spec, two, Path(tmp) / f"b{i}")
            a_in, inside = (home.registry().read_json(v, "training.json")["seconds"]
                            for v in (a_version, b_version))  # fmt: skip
            a_times.append(a_sec)
            b_times.append(b_sec)
            a_train.append(a_in)
            b_train.append(inside)
            versions["A"].append(a_version)
            versions["B"].append(b_version)
            print(f"repeat {i + 1}/{repeats}: 1 process {a_sec:.1f} s, 2 processes {b_sec:.1f} s"
                  f" ({inside:.1f} s of it training)")  # fmt: skip

        # The yardstick for the metric difference: the same 1-process training with another seed.
        reseeded = dataclasses.replace(one, seed=one.seed + 1)
        _, other = one_process(home, spec, reseeded, Path(tmp) / "seed")
        feats, registry = home.partitions("cleaned_features"), home.registry()
        m_seed = evaluate_version(feats, registry, other).report["challenger"]
        metrics = {
            side: [evaluate_version(feats, registry, v).report["challenger"] for v in vs]
            for side, vs in versions.items()
        }
    a, b, a_in, b_in = spread(a_times), spread(b_times), spread(a_train), spread(b_train)
    a_out = spread([w - t for w, t in zip(a_times, a_train, strict=True)])
    b_out = spread([w - t for w, t in zip(b_times, b_train, strict=True)])
    ma, mb = metrics["A"][-1], metrics["B"][-1]
    d_auc, d_loss = mb["roc_auc"] - ma["roc_auc"], mb["log_loss"] - ma["log_loss"]
    d_seed = m_seed["roc_auc"] - ma["roc_auc"]
    same = {s: len({round(m["roc_auc"], 12) for m in ms}) == 1 for s, ms in metrics.items()}
    path = write_results(
        args.results_dir,
        "ddp",
        {
            "compared": what,
            "quick": args.quick,
            "environment": env,
            "params": {"A": one.to_dict(), "B": two.to_dict()},
            "one_process_seconds": a_times,
            "two_processes_seconds": b_times,
            "one_process_training_seconds": a_train,
            "two_processes_training_seconds": b_train,
            "metrics": metrics,
            "another_seed_metrics": m_seed,
            "repeatable": same,
        },
    )

    def cell(s: dict[str, float]) -> str:
        return f"{s['median']:.1f} s ({s['min']:.1f}-{s['max']:.1f})"

    print(f"each side repeatable (the same ROC-AUC in every repeat): {same}; full numbers: {path}")
    print()
    print_table([
        {"measure": "wall time, one training to a saved version", "A": cell(a), "B": cell(b),
         "ratio": f"{b['median'] / a['median']:.2f}x", "goal": "(information)", "met": ""},
        {"measure": "of it train_model (features, fit, threshold)", "A": cell(a_in),
         "B": cell(b_in), "ratio": f"{b_in['median'] / a_in['median']:.2f}x",
         "goal": "(information)", "met": ""},
        {"measure": "of it the rest (rows, saving; B: + start, imports, rendezvous)",
         "A": cell(a_out), "B": cell(b_out), "ratio": f"{b_out['median'] / a_out['median']:.2f}x",
         "goal": "(information)", "met": ""},
        {"measure": "holdout ROC-AUC, A with seed + 1 (the yardstick)", "A": f"{ma['roc_auc']:.4f}",
         "B": f"{m_seed['roc_auc']:.4f}", "ratio": f"{d_seed:+.4f}", "goal": "(information)",
         "met": ""},
        {"measure": "holdout log loss", "A": f"{ma['log_loss']:.4f}", "B": f"{mb['log_loss']:.4f}",
         "ratio": f"{d_loss:+.4f}", "goal": f"|diff| <= {TOLERANCE}",
         "met": "yes" if abs(d_loss) <= TOLERANCE else "no"},
        {"measure": "holdout ROC-AUC", "A": f"{ma['roc_auc']:.4f}", "B": f"{mb['roc_auc']:.4f}",
         "ratio": f"{d_auc:+.4f}", "goal": f"|diff| <= {TOLERANCE}",
         "met": "yes" if abs(d_auc) <= TOLERANCE else "no"},
    ])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
