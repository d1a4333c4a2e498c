"""The served champion and the watcher that swaps it.

A watcher thread polls the registry's ``champion.json``; a new champion is loaded and compiled
beside the old one, then swapped in by one reference assignment, so no request fails during the
swap. If the new version cannot be loaded the old one keeps serving and ``/health`` says so.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.model.registry import LoadedModel, ModelRegistry, ModelVersionError
from pipeline.serving.features import CompiledFeatures
from pipeline.task import parse_task


@dataclass
class ServedModel:
    """One version, ready to score: the network in eval mode and its compiled features."""

    version: str
    module: torch.nn.Module
    features: CompiledFeatures
    threshold: float
    info: dict[str, Any]

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, info: dict[str, Any]) -> ServedModel:
        if loaded.serving is None:
            raise ModelVersionError(
                f"model version {loaded.version!r} has no serving.json (the lagged-rate tables);"
                " it was trained before serving existed: retrain it"
            )
        spec = parse_task(loaded.serving["task"], origin=f"model version {loaded.version}")
        features = CompiledFeatures.compile(spec, loaded.preprocessor, loaded.serving)
        return cls(loaded.version, loaded.module, features, loaded.threshold, info)

    @torch.inference_mode()
    def scores(self, records: list[dict[str, Any]]) -> np.ndarray:
        cat, num = self.features.transform(records)
        logits = self.module(torch.from_numpy(cat), torch.from_numpy(num))  # (rows,)
        return torch.sigmoid(logits).numpy().astype(np.float64)


def load_served(registry: ModelRegistry, record: dict[str, Any]) -> ServedModel:
    """Loads the champion that ``record`` (champion.json's content) names."""
    version = record["version"]
    loaded = registry.load(version)
    report = registry.path(version) / "evaluation.json"
    metrics = json.loads(report.read_text())["challenger"] if report.is_file() else None
    info = {
        "version": version,
        "promoted_at": record.get("promoted_at"),
        "reason": record.get("reason"),
        "threshold": loaded.threshold,
        "window": loaded.training.get("window"),
        "metrics": metrics,
        "lagged_rates_as_of": (loaded.serving or {}).get("lagged_rates_as_of"),
    }
    return ServedModel.from_loaded(loaded, info)


class ChampionWatcher:
    """Keeps ``current`` on the registry's champion; polls ``champion.json`` in a thread."""

    def __init__(self, registry: ModelRegistry, poll_seconds: float = 0.5):
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.current: ServedModel | None = None
        self.pointer: dict[str, Any] | None = None  # the last champion.json acted on
        self.load_error: dict[str, Any] | None = None
        self.checked_at: float | None = None
        self._stat: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Loads the champion if the pointer changed; on failure keeps the old one."""
        with self._lock:
            self.checked_at = time.time()
            try:
                st = self.registry.champion_file.stat()
            except FileNotFoundError:
                return
            stat = (st.st_mtime_ns, st.st_size)
            if stat == self._stat:
                return
            record = self.registry.champion_record()
            self._stat = stat
            if record is None or record == self.pointer:
                return
            self.pointer = record
            try:
                served = load_served(self.registry, record)
            except (ModelVersionError, OSError, ValueError, KeyError) as err:
                self.load_error = {
                    "version": record.get("version"),
                    "error": str(err),
                    "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                }
                return
            self.current = served  # one assignment: requests in flight keep their own model
            self.load_error = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.check()

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._loop, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def health(self) -> dict[str, Any]:
        serving = self.current.version if self.current else None
        champion = self.pointer.get("version") if self.pointer else None
        if serving is None:
            status = "no_model"
        elif self.load_error is not None:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "serving_version": serving,
            "champion_version": champion,
            "load_error": self.load_error,
            "checked_at": self.checked_at,
        }
