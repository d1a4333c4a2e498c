"""The network: an ensemble of wide-and-deep binary classifiers, in plain PyTorch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def embedding_dim(cardinality: int, max_dim: int = 16) -> int:
    """A common rule of thumb: grows slowly with the vocabulary, capped at ``max_dim``."""
    return int(max(2, min(max_dim, round(1.6 * cardinality**0.56))))


class WideDeep(nn.Module):
    """Wide-and-deep binary classifier over categorical and scaled numeric inputs.

    The wide part is a logistic regression (one weight per category, one per numeric input);
    the deep part an MLP over embeddings and numeric inputs. Their logits add up.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_numeric: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, embedding_dim(c)) for c in cardinalities)
        self.wide_cat = nn.ModuleList(nn.Embedding(c, 1) for c in cardinalities)
        self.wide_num = nn.Linear(n_numeric, 1) if n_numeric else None
        width = sum(e.embedding_dim for e in self.embeddings) + n_numeric
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        for table in self.wide_cat:
            nn.init.zeros_(table.weight)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """``cat``: (batch, n_cat) int64, ``num``: (batch, n_numeric) float32 -> (batch,) logits."""
        parts = [emb(cat[:, i]) for i, emb in enumerate(self.embeddings)]  # each (batch, dim_i)
        deep = self.mlp(torch.cat([*parts, num], dim=1)).squeeze(1)  # (batch,)
        wide = sum(w(cat[:, i]).squeeze(1) for i, w in enumerate(self.wide_cat))  # (batch,)
        if self.wide_num is not None:
            wide = wide + self.wide_num(num).squeeze(1)
        return deep + wide

    @torch.no_grad()
    def fill_unseen(self, counts: Sequence[torch.Tensor]) -> None:
        """Gives every category that training never saw the row-weighted mean of those it saw.

        ``counts[i]`` holds how many training rows had each code of column ``i``. A code with
        no rows (a value seen only in the validation slice, or the out-of-vocabulary slot) got
        no gradient, so its embedding would still be its random start: a different guess for
        every seed. The mean is what the model learned about an average value instead.
        """
        for table, wide, count in zip(self.embeddings, self.wide_cat, counts, strict=True):
            seen = count > 0
            if seen.all() or not seen.any():
                continue
            weights = (count / count.sum()).unsqueeze(1).to(table.weight.dtype)
            for weight in (table.weight, wide.weight):
                weight[~seen] = (weights * weight).sum(dim=0)


class FlywheelNet(nn.Module):
    """An ensemble of ``members`` independent :class:`WideDeep` networks in one module.

    Each member starts from its own random weights and sees its own dropout; each is trained on
    its own loss (see :meth:`member_logits`), so they stay independent models. The prediction is
    their mean logit. One ``state_dict`` holds them all.
    """

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_numeric: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        members: int = 1,
    ):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.members = nn.ModuleList(
            WideDeep(cardinalities, n_numeric, hidden_sizes, dropout) for _ in range(members)
        )

    def member_logits(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """(batch, n_cat), (batch, n_numeric) -> (batch, members) logits, one column a member."""
        return torch.stack([member(cat, num) for member in self.members], dim=1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """``cat``: (batch, n_cat) int64, ``num``: (batch, n_numeric) float32 -> (batch,) logits."""
        return self.member_logits(cat, num).mean(dim=1)

    def fill_unseen(self, cat: torch.Tensor) -> None:
        """:meth:`WideDeep.fill_unseen` for every member, from the training rows' codes."""
        sizes = [table.num_embeddings for table in self.members[0].embeddings]
        counts = [torch.bincount(cat[:, i], minlength=size) for i, size in enumerate(sizes)]
        for member in self.members:
            member.fill_unseen(counts)
