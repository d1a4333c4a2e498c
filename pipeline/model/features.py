"""Turning cleaned rows into model tensors, with statistics fitted on the training days only.

The fitted state (vocabularies, means, scales) is plain JSON that travels inside the model
version, so that serving computes exactly what training computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

from pipeline.task import TaskSpec

OOV_INDEX = 0  # index 0 of every vocabulary: unseen, rare or missing values


@dataclass
class Preprocessor:
    """Category vocabularies and numeric scaling, fitted on training rows."""

    categorical: list[str]
    numeric: list[str]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    min_count: int = 2

    @classmethod
    def for_task(cls, spec: TaskSpec, min_count: int = 2) -> Preprocessor:
        return cls(list(spec.model_categorical), list(spec.model_numeric), min_count=min_count)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        if frame.empty:
            raise ValueError("cannot fit preprocessing on zero rows")
        for col in self.categorical:
            counts = frame[col].dropna().astype(str).value_counts()
            kept = counts[counts >= self.min_count]
            # Sorted by value, not count, so that equal data give equal vocabularies.
            self.vocabularies[col] = sorted(kept.index.tolist())
        for col in self.numeric:
            values = frame[col].to_numpy(dtype="float64")
            values = values[np.isfinite(values)]
            mean = float(values.mean()) if values.size else 0.0
            scale = float(values.std()) if values.size else 1.0
            self.means[col] = mean
            self.scales[col] = scale if scale > 1e-12 else 1.0
        return self

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: the vocabulary plus the out-of-vocabulary slot."""
        return [len(self.vocabularies[c]) + 1 for c in self.categorical]

    @property
    def n_numeric_inputs(self) -> int:
        """Scaled values plus one missing-value indicator per numeric column."""
        return 2 * len(self.numeric)

    def transform(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(categorical, numeric)``: ``(rows, n_cat)`` int64, ``(rows, 2*n_num)`` f32."""
        import torch  # here, not at import: the data checks read vocabularies without torch

        n = len(frame)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, col in enumerate(self.categorical):
            vocab = pd.Index(self.vocabularies[col])
            codes = vocab.get_indexer(frame[col].astype(object).where(frame[col].notna(), None))
            cat[:, j] = codes + 1  # -1 (unknown) becomes OOV_INDEX
        num = np.zeros((n, 2 * len(self.numeric)), dtype=np.float32)
        for j, col in enumerate(self.numeric):
            values = frame[col].to_numpy(dtype="float64")
            missing = ~np.isfinite(values)
            scaled = (values - self.means[col]) / self.scales[col]
            num[:, 2 * j] = np.where(missing, 0.0, scaled)
            num[:, 2 * j + 1] = missing
        return torch.from_numpy(cat), torch.from_numpy(num)

    def oov_counts(self, frame: pd.DataFrame) -> dict[str, int]:
        """Values per categorical column that fall outside the training vocabulary."""
        out = {}
        for col in self.categorical:
            known = frame[col].astype(str).isin(self.vocabularies[col])
            out[col] = int((~known & frame[col].notna()).sum())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "categorical": self.categorical,
            "numeric": self.numeric,
            "vocabularies": self.vocabularies,
            "means": self.means,
            "scales": self.scales,
            "min_count": self.min_count,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(**data)
