"""Shared test helpers (test modules import from here, never from each other): a user's own
data set (churn), the resources ``definitions.py`` would choose, the assets built for the
default partitions, and a home with data and a champion for serving tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import uvicorn
import yaml

from pipeline.data.sources import make_source
from pipeline.data.storage import PartitionStore
from pipeline.model.params import TrainParams
from pipeline.model.registry import ModelRegistry
from pipeline.serving.features import records_for_api
from pipeline.steps import build_features_day, ingest_day, train_version
from pipeline.task import TaskSpec, load_task
from tests.servers import free_port

CHURN_START = dt.date(2025, 3, 1)


@contextlib.contextmanager
def memory_home():
    """A fresh ``memory://`` folder (fsspec's in-process object store, a UPath), removed after:
    the unit tests' object storage."""
    import secrets

    from upath import UPath

    root = UPath(f"memory://flywheel-{secrets.token_hex(4)}")
    try:
        yield root
    finally:
        if root.fs.exists(root.path):
            root.fs.rm(root.path, recursive=True)


def make_churn_frame(days: int, rows_per_day: int = 120, seed: int = 0) -> pd.DataFrame:
    """A small synthetic data set of a user's own: will a subscriber churn?

    The label depends on the plan, the region and the usage, so a model can learn it.
    """
    rng = np.random.default_rng(seed)
    n = days * rows_per_day
    day_offsets = np.repeat(np.arange(days), rows_per_day)
    seconds = rng.integers(0, 86400, n)
    times = (
        pd.Timestamp(CHURN_START, tz="UTC")
        + pd.to_timedelta(day_offsets, "D")
        + pd.to_timedelta(seconds, "s")
    )
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], n)
    usage = rng.gamma(2.0, 10.0, n)
    tenure = rng.integers(1, 60, n).astype(float)
    logit = 0.5 + 2.0 * (plan == "basic") - 0.1 * usage + 1.0 * (region == "south") - 0.03 * tenure
    churned = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "YES", "NO")
    return pd.DataFrame(
        {
            "event_time": times,
            "customer_id": np.arange(n),
            "plan": plan,
            "region": region,
            "usage": usage.round(2),
            "tenure": tenure,
            "support_calls_after": rng.integers(0, 5, n),  # known only after the outcome
            "churned": churned,
        }
    )


CHURN_TASK = {
    "name": "churn",
    "source": {"kind": "files", "path": "data"},
    "timestamp": "event_time",
    "label": {"column": "churned", "positive_values": ["YES"]},
    "features": {
        "categorical": ["plan", "region"],
        "numeric": ["usage", "tenure"],
        "calendar": ["day_of_week"],
        "lagged_rates": [{"by": ["region"], "days": 3}],
    },
    "exclude": ["support_calls_after", "customer_id"],
}
# The data-check keys a task file may add (``key:`` and ``checks:``), as the check tests use them.
CHURN_CHECKS = {
    "key": ["customer_id"],
    "checks": {
        "usage": {"range": [0, 500]},
        "plan": {"allowed": ["basic", "plus", "pro"]},
        "churned": {"allowed": ["YES", "NO"]},
    },
}


def write_churn_task(root: Path, **task_keys) -> Path:
    """Three weeks of churn data as one Parquet file per week under ``root/task/data``, and a
    task file over them (``CHURN_TASK`` with ``task_keys`` added); returns the task file."""
    data = root / "task" / "data"
    data.mkdir(parents=True)
    frame = make_churn_frame(days=21)
    week = (frame["event_time"] - pd.Timestamp(CHURN_START, tz="UTC")).dt.days // 7
    for w, part in frame.groupby(week):
        part.to_parquet(data / f"week-{w}.parquet", index=False)
    path = root / "task" / "churn.yaml"
    path.write_text(yaml.safe_dump({**CHURN_TASK, **task_keys}))
    return path


def flywheel_resources(home: Path, task_file: Path | str = "") -> dict:
    """The resources definitions.py would choose, pointed at ``home`` and ``task_file``."""
    from resources import FlywheelStorage, JsonIOManager, TaskSource

    return {
        "storage": FlywheelStorage(home=str(home)),
        "task": TaskSource(task_file=str(task_file)),
        "json_io_manager": JsonIOManager(home=str(home)),
    }


def graph_assets() -> dict:
    """The assets and checks, by name, exactly as ``definitions.py`` builds them for the default
    settings, for ``dagster.materialize``."""
    from definitions import Settings, build_defs

    defs = build_defs(Settings())
    out = {a.key.to_user_string(): a for a in defs.assets}
    out.update({next(iter(c.check_keys)).name: c for c in defs.asset_checks})
    return out


def scored(n: int = 3000, seed: int = 0, signal: float = 1.0):
    """Labels (a quarter positive) and one model's scores with ``signal``, and the generator, for
    the gate's statistics on hand-made scores."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(float)
    a = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1.5, n))))
    return y, a, rng


SERVE_DAY = CHURN_START + dt.timedelta(days=17)  # the day after the first version's holdout


def build_home(root: Path, days: int = 21, home: Path | None = None):
    """Churn data (raw_data and cleaned_features for every day) and one promoted champion."""
    data = root / "task" / "data"
    data.mkdir(parents=True)
    make_churn_frame(days).to_parquet(data / "all.parquet", index=False)
    (root / "task" / "churn.yaml").write_text(yaml.safe_dump(CHURN_TASK))
    spec = load_task(root / "task" / "churn.yaml")
    home = home or root / "home"
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    source = make_source(spec)
    for i in range(days):
        day = CHURN_START + dt.timedelta(days=i)
        ingest_day(source, raw, day)
        build_features_day(spec, raw, feats, day)
    registry = ModelRegistry(home / "models")
    version = train_small(spec, feats, raw, registry, root / "scratch", SERVE_DAY)
    registry.promote(version, reason="test")
    return spec, home, registry


def train_small(spec, feats, raw, registry, scratch, serve_day, seed=0, **kwargs) -> str:
    # Two epochs at 1e-2: at the default 3e-3 two epochs leave the members far apart (their
    # holdout AUCs spread by ~0.08 on the churn task), and the gate rightly refuses to call
    # even a large gain significant over such retraining noise.
    params = TrainParams(epochs=2, window_days=10, holdout_days=3, seed=seed, batch_size=256,
                         learning_rate=1e-2)  # fmt: skip
    end = serve_day - dt.timedelta(days=1)
    return train_version(spec, feats, registry, params, scratch, end=end, raw=raw, **kwargs).version


class Server:
    """uvicorn in a thread on a free loopback port; stopped on exit."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 30 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def served_app(registry: ModelRegistry, root: Path, token: str | None = None, **settings):
    """The serving app on a free loopback port, with a fresh feedback store under ``root``:
    yields ``(store, url)``; the server stops and the store closes on exit. ``settings`` go to
    ``create_app`` as they are."""
    from pipeline.feedback.store import FeedbackStore
    from pipeline.home import FlywheelHome
    from pipeline.serving.app import create_app

    store = FeedbackStore(FlywheelHome.at(root).feedback_url)
    store.upgrade()
    try:
        app = create_app(registry, store, api_token=token, poll_seconds=0.1, **settings)
        with Server(app) as server:
            yield store, server.url
    finally:
        store.close()


def serve_rows(spec, home_dir: Path) -> list[dict]:
    return records_for_api(PartitionStore(home_dir / "raw_data").read(SERVE_DAY), spec)


def shuffled_labels(feats: PartitionStore, root: Path, seed: int = 0) -> PartitionStore:
    """A copy of the cleaned_features days under ``root`` with each day's labels shuffled: a
    model trained on it has learned nothing (a clearly worse model for the gate and shadow)."""
    from pipeline.task import LABEL_COLUMN

    rng = np.random.default_rng(seed)
    out = PartitionStore(root)
    for day in feats.days():
        frame = feats.read(day)
        frame[LABEL_COLUMN] = rng.permutation(frame[LABEL_COLUMN].to_numpy())
        out.write(day, frame)
    return out


def build_shadow_home(root: Path, home: Path | None = None):
    """:func:`build_home` (its champion is ``good``) and a ``bad`` version trained on shuffled
    labels, not promoted. Returns ``(spec, home, registry, {"good": ..., "bad": ...})``."""
    spec, home, registry = build_home(root / "data", home=home)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    good = registry.champion()
    bad_feats = shuffled_labels(feats, root / "shuffled")
    bad = train_small(spec, bad_feats, raw, registry, root / "scratch_bad", SERVE_DAY)
    versions = {"good": good, "bad": bad}
    return spec, home, registry, versions


def copy_registry(registry: ModelRegistry, root: Path) -> ModelRegistry:
    """A copy of ``registry`` (versions, pointers, log) under ``root``, for a test to change."""
    import shutil

    shutil.copytree(registry.root, root / "models")
    return ModelRegistry(root / "models")


def traffic_rows(home: Path, days: int = 4) -> pd.DataFrame:
    """The raw rows of ``days`` days from SERVE_DAY on (120 a day), labels included."""
    raw = PartitionStore(home / "raw_data")
    return raw.read_many([SERVE_DAY + dt.timedelta(days=k) for k in range(days)])[0]


def flights_home(home: Path, end: dt.date, days: int) -> tuple[TaskSpec, Path]:
    """Real 2013 flights (the built-in task, replayed) in ``home``'s raw_data and
    cleaned_features for the ``days`` days ending at ``end``, with the raw days their lagged
    rates read before them."""
    spec = load_task(None)
    raw, feats = PartitionStore(home / "raw_data"), PartitionStore(home / "cleaned_features")
    source = make_source(spec)
    wanted = [end - dt.timedelta(days=k) for k in range(days - 1, -1, -1)]
    lead = [wanted[0] - dt.timedelta(days=k) for k in range(spec.lag_reach_days, 0, -1)]
    for day in [*lead, *wanted]:
        ingest_day(source, raw, day)
    for day in wanted:
        build_features_day(spec, raw, feats, day)
    return spec, home


def save_tiny_version(registry: ModelRegistry, seed: int = 0) -> str:
    """A saved version of a tiny untrained network (one categorical, one numeric input): enough
    for the registry's and the pointers' tests, which never score it."""
    import torch

    from pipeline.model.features import Preprocessor
    from pipeline.model.module import FlywheelModule

    torch.manual_seed(seed)
    module = FlywheelModule(cardinalities=[3], n_numeric=2, hidden_sizes=[4])
    prep = Preprocessor(["c"], ["x"], {"c": ["a", "b"]}, {"x": 0.0}, {"x": 1.0})
    return registry.save_version(module, prep, {"threshold": 0.4, "prior": 0.2})
