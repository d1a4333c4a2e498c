"""A model version as the serving app holds it: compiled features, the forward pass (NumPy or
PyTorch) and what ``/model`` shows; :func:`load_served` makes one from the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.model.registry import LoadedModel, ModelRegistry, ModelVersionError
from pipeline.serving.features import CompiledFeatures
from pipeline.serving.forward import NumpyNet
from pipeline.task import parse_task


@dataclass
class ServedModel:
    """One version, ready to score: the network in eval mode and its compiled features.

    ``net``, where set, is the network exported to NumPy (:mod:`pipeline.serving.forward`),
    which then scores; without it the PyTorch module does.
    """

    version: str
    module: torch.nn.Module
    features: CompiledFeatures
    threshold: float
    info: dict[str, Any]
    net: NumpyNet | None = None

    @classmethod
    def from_loaded(
        cls, loaded: LoadedModel, info: dict[str, Any], engine: str = "numpy"
    ) -> ServedModel:
        if loaded.serving is None:
            raise ModelVersionError(
                f"model version {loaded.version!r} has no serving.json (the lagged-rate tables);"
                " it was trained before serving existed: retrain it"
            )
        spec = parse_task(loaded.serving["task"], origin=f"model version {loaded.version}")
        features = CompiledFeatures.compile(spec, loaded.preprocessor, loaded.serving)
        net = NumpyNet.export(loaded.module.net) if engine == "numpy" else None
        return cls(loaded.version, loaded.module, features, loaded.threshold, info, net)

    @torch.inference_mode()
    def forward(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        """Scores of features ``(rows, n_cat)``, ``(rows, n_num)`` -> ``(rows,)`` float64."""
        if self.net is not None:
            return self.net.scores(cat, num)
        logits = self.module(torch.from_numpy(cat), torch.from_numpy(num))  # (rows,)
        return torch.sigmoid(logits).numpy().astype(np.float64)

    def scores(self, records: list[dict[str, Any]]) -> np.ndarray:
        scores = self.forward(*self.features.transform(records))
        if not np.isfinite(scores).all():  # inputs are bounded, so the model itself is broken
            bad = int(np.flatnonzero(~np.isfinite(scores))[0])
            raise ValueError(f"model version {self.version} gave no finite score for record {bad}")
        return scores


def load_served(
    registry: ModelRegistry, record: dict[str, Any], engine: str = "numpy"
) -> ServedModel:
    """Loads the champion that ``record`` (champion.json's content) names; ``engine``:
    ``numpy`` or ``torch``, which of the two computes the forward pass."""
    version = record["version"]
    loaded = registry.load(version)
    report = registry.path(version) / "evaluation.json"
    metrics = json.loads(report.read_text())["challenger"] if report.is_file() else None
    info = {
        **served_info(record, {}),
        "threshold": loaded.threshold,
        "window": loaded.training.get("window"),
        "metrics": metrics,
        "lagged_rates_as_of": (loaded.serving or {}).get("lagged_rates_as_of"),
    }
    return ServedModel.from_loaded(loaded, info, engine)


def served_info(record: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``/model``'s answer for the pointer ``record``: ``info`` with its version and reason."""
    when = record.get("promoted_at") or record.get("since")
    return {**info, "version": record["version"], "promoted_at": when,
            "reason": record.get("reason")}  # fmt: skip
