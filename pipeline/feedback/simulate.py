"""``flywheel simulate``: real rows to ``/predict``, each answered with its true outcome.

So the whole loop (predictions, feedback, the sensor's run, a new champion) can be watched in
the UI without users.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import numpy as np
import pandas as pd

from pipeline.data.labels import compute_labels
from pipeline.data.sources import make_source
from pipeline.home import FlywheelHome
from pipeline.serving.features import records_for_api
from pipeline.task import TaskSpec


def recent_rows(spec: TaskSpec, home: FlywheelHome, days: int = 3) -> pd.DataFrame:
    """The newest ``days`` raw_data partitions under ``home``, else the source's last days."""
    store = home.partitions("raw_data")
    have = store.days()[-days:]
    if have:
        return store.read_many(have)[0]
    today = dt.datetime.now(dt.UTC).date()
    source = make_source(spec)
    return pd.concat([source.read_day(today - dt.timedelta(days=k)) for k in range(1, days + 1)])


def simulate(
    base_url: str,
    rows: pd.DataFrame,
    spec: TaskSpec,
    predictions: int,
    token: str | None = None,
    batch_size: int = 50,
    source: str = "simulate",
    seed: int = 0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Sends ``predictions`` rows (sampled with ``seed``) and their true labels as feedback."""
    label, reason = compute_labels(rows, spec)
    usable = rows[(reason == "").to_numpy()].reset_index(drop=True)
    labels = label[(reason == "").to_numpy()].to_numpy(dtype=int)
    if usable.empty:
        raise ValueError("no rows with a usable label to simulate with")
    pick = np.random.default_rng(seed).choice(len(usable), size=predictions, replace=True)
    records = records_for_api(usable.iloc[pick], spec)
    truth = labels[pick]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sent = stored = duplicates = 0
    versions: set[str] = set()
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            answer = client.post("/predict", json={"records": batch})
            answer.raise_for_status()
            body = answer.json()
            versions.add(body["model_version"])
            for pred, y in zip(body["predictions"], truth[start : start + batch_size], strict=True):
                item = {"prediction_id": pred["prediction_id"], "label": int(y), "source": source}
                fb = client.post("/feedback", json=item)
                fb.raise_for_status()
                stored += fb.status_code == 201
                duplicates += fb.status_code == 200
            sent += len(batch)
    return {
        "predictions": sent,
        "feedback": stored,
        "duplicates": duplicates,
        "model_versions": sorted(versions),
        "positive_rate": float(truth.mean()),
    }
