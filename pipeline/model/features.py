"""Turning cleaned rows into model tensors, with statistics fitted on the training days only.

The fitted state (vocabularies, means, scales) is plain JSON that travels inside the model
version, so that serving computes exactly what training computed. It also keeps the training
distribution of each feature (numeric deciles and the share of rows in each decile bin; each
category's share), which the data checks compare each new day against (population stability).
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
DECILES = tuple(k / 10 for k in range(1, 10))  # the 9 cut points of the training distribution


@dataclass
class Preprocessor:
    """Category vocabularies and numeric scaling, fitted on training rows."""

    categorical: list[str]
    numeric: list[str]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    min_count: int = 2
    # The training distribution, for drift checks (absent from versions saved before them):
    deciles: dict[str, list[float]] = field(default_factory=dict)  # numeric: the 9 cut points
    # numeric: the share of training rows in each of the 10 decile bins, then the missing share
    decile_shares: dict[str, list[float]] = field(default_factory=dict)
    # categorical: the out-of-vocabulary share (OOV_INDEX), then each vocabulary value's share
    category_shares: dict[str, list[float]] = field(default_factory=dict)
    # the largest PSI of one training day against all training rows, per feature
    typical_day_psi: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_task(cls, spec: TaskSpec, min_count: int = 2) -> Preprocessor:
        return cls(list(spec.model_categorical), list(spec.model_numeric), min_count=min_count)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        from pipeline.checks.drift import decile_bins, typical_day_psi  # numpy only

        if frame.empty:
            raise ValueError("cannot fit preprocessing on zero rows")
        for col in self.categorical:
            counts = frame[col].dropna().astype(str).value_counts()
            kept = counts[counts >= self.min_count]
            # Sorted by value, not count, so that equal data give equal vocabularies.
            self.vocabularies[col] = sorted(kept.index.tolist())
            # Coded as transform codes them: OOV_INDEX (unseen, rare, missing), then the values.
            vocab = pd.Index(self.vocabularies[col])
            codes = vocab.get_indexer(frame[col].astype(object).where(frame[col].notna(), None))
            shares = np.bincount(codes + 1, minlength=len(vocab) + 1) / len(frame)
            self.category_shares[col] = shares.tolist()
        for col in self.numeric:
            values = frame[col].to_numpy(dtype="float64")
            finite = values[np.isfinite(values)]
            cuts = np.quantile(finite, DECILES) if finite.size else np.zeros(0)
            bins = decile_bins(values, cuts)  # 10 bins over the cuts, then the missing values
            self.deciles[col] = cuts.tolist()
            self.decile_shares[col] = (np.bincount(bins, minlength=11) / len(frame)).tolist()
            values = finite
            mean = float(values.mean()) if values.size else 0.0
            scale = float(values.std()) if values.size else 1.0
            self.means[col] = mean
            self.scales[col] = scale if scale > 1e-12 else 1.0
        self.typical_day_psi = typical_day_psi(self, frame)
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
            "deciles": self.deciles,
            "decile_shares": self.decile_shares,
            "category_shares": self.category_shares,
            "typical_day_psi": self.typical_day_psi,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        """The state :meth:`to_dict` wrote; one saved before the training distribution was kept
        loads with none (the drift checks then skip the version)."""
        return cls(**data)
