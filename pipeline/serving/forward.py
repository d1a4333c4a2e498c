"""The network's forward pass in NumPy, for serving: the same scores as PyTorch, for less.

A request of one record spends most of a PyTorch forward pass in per-operation overhead: the
ensemble of :class:`~pipeline.model.network.WideDeep` members is some 90 small operations
(about 0.3 ms for one row). Exported once, at load time, the network becomes a handful of NumPy
operations:

- each categorical column's embeddings of every member are multiplied into that member's first
  hidden layer ahead of time (``embedding @ W1[:, column's slice].T``), and the members' wide
  weights ride along as one more column (their mean), so the first layer of every member and
  the whole wide part are one table lookup per column plus one product with the numeric inputs;
- the later layers are one matrix product per member and layer.

NumPy's BLAS must run on one thread here (``flywheel serve`` limits it, as it limits PyTorch's):
on a busy machine its threads made a 1,000-row product ten times slower, not faster.

Everything is computed in float64 from the float32 weights, so the scores agree with PyTorch's
float32 pass to about 1e-7 (``tests/pipeline/serving/test_forward.py`` holds them to 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NumpyNet:
    """A :class:`~pipeline.model.network.FlywheelNet` in eval mode, as arrays."""

    tables: list[np.ndarray]  # per categorical column: (cardinality, members * h1 + 1)
    numeric: np.ndarray  # (n_numeric, members * h1 + 1)
    bias: np.ndarray  # (members * h1 + 1,)
    layers: list[list[tuple[np.ndarray, np.ndarray]]]  # per member, later layers: (in, out), (out,)

    @classmethod
    def export(cls, net) -> NumpyNet:
        """The arrays of ``net`` (a FlywheelNet); refuses a structure it does not know."""
        import torch
        from torch import nn

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float64)

        members = list(net.members)
        linears: list[list[nn.Linear]] = []
        for member in members:
            mods = list(member.mlp)
            lin = [m for m in mods if isinstance(m, nn.Linear)]
            others = {type(m) for m in mods if not isinstance(m, nn.Linear)}
            if not others <= {nn.ReLU, nn.Dropout} or not isinstance(mods[-1], nn.Linear):
                raise ValueError(f"cannot export an MLP of {sorted(t.__name__ for t in others)}")
            if sum(isinstance(m, nn.ReLU) for m in mods) != len(lin) - 1:
                raise ValueError("cannot export an MLP without one ReLU between its layers")
            linears.append(lin)
        n_cols = len(members[0].embeddings)
        tables = []
        for i in range(n_cols):
            parts, start = [], 0
            for member, lin in zip(members, linears, strict=True):
                start = sum(e.embedding_dim for e in member.embeddings[:i])
                emb = arr(member.embeddings[i].weight)  # (cardinality, dim_i)
                w1 = arr(lin[0].weight)[:, start : start + emb.shape[1]]  # (h1, dim_i)
                parts.append(emb @ w1.T)  # (cardinality, h1)
            wide = np.mean([arr(m.wide_cat[i].weight) for m in members], axis=0)  # (card, 1)
            tables.append(np.concatenate([*parts, wide], axis=1))
        width = sum(e.embedding_dim for e in members[0].embeddings)
        num_parts = [arr(lin[0].weight)[:, width:].T for lin in linears]  # (n_numeric, h1)
        bias = [arr(lin[0].bias) for lin in linears]
        if members[0].wide_num is not None:
            num_parts.append(np.mean([arr(m.wide_num.weight).T for m in members], axis=0))
            bias.append(np.mean([arr(m.wide_num.bias) for m in members], axis=0))
        else:
            num_parts.append(np.zeros((num_parts[0].shape[0], 1)))
            bias.append(np.zeros(1))
        layers = [[(np.ascontiguousarray(arr(layer.weight).T), arr(layer.bias))
                   for layer in lin[1:]] for lin in linears]  # fmt: skip
        return cls(tables, np.concatenate(num_parts, axis=1), np.concatenate(bias), layers)

    def logits(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        """``cat`` (rows, n_cat) int, ``num`` (rows, n_numeric) float -> (rows,) float64."""
        z = num.astype(np.float64) @ self.numeric  # (rows, members * h1 + 1); BLAS: one dtype
        z += self.bias
        for i, table in enumerate(self.tables):
            z += table[cat[:, i]]
        members = len(self.layers)
        width = (z.shape[1] - 1) // members  # h1
        deep = np.zeros(len(z))
        for m, layers in enumerate(self.layers):
            h = z[:, m * width : (m + 1) * width]  # (rows, h1): member m's first layer
            for weight, bias in layers:
                h = np.maximum(h, 0.0) @ weight + bias  # ReLU, then the next layer
            deep += h[:, 0]  # the last layer has one output
        return deep / members + z[:, -1]  # the members' mean deep logit plus their mean wide one

    def scores(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        """Sigmoid of :meth:`logits`, written to stay finite for any logit."""
        x = self.logits(cat, num)
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
