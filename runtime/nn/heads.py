"""Baseline output heads to compare the self-mix head with, selected by ``head_kwargs["kind"]``.

=============  =====================================================================================
``kind``       head
=============  =====================================================================================
``selfmix``    :class:`~tsym.compiler.SelfMixHead` (the default)
``linear``     :class:`LinearHead`: one equivariant ``o3.Linear(irreps_in -> irreps_out)`` per node,
               the plain readout of e3nn's ``CartesianTensor`` style; target irreps absent from the
               backbone's irreps get nothing (e.g. the ``3o`` of a hyperpolarizability)
``invariant``  :class:`InvariantHead`: an MLP of the node's ``0e`` features predicting all ``3^n``
               Cartesian components, projected onto the declared symmetry; symmetric but *not*
               rotation-equivariant (its output is rotation invariant)
=============  =====================================================================================

Both baselines have the signature and output of :class:`~tsym.compiler.SelfMixHead`:
``head(node_features [N, irreps_in.dim], batch [N], num_graphs) -> [G or N, 3, ..., 3]``, pool
per the plan (sum or mean over each structure's nodes) and keep ``Q`` as a float64 buffer.  They
accept the self-mix keyword arguments they do not use (``hidden_mul``, ``skip``; ``mlp_hidden``
for :class:`LinearHead`), so that a config switches head by its ``kind`` alone.

Examples
--------
>>> q = torch.eye(3, dtype=torch.float64)  # a polar vector, irreps 1o
>>> head = LinearHead("4x0e+2x1o", "1x1o", q)
>>> head(torch.randn(5, 10), torch.tensor([0, 0, 1, 1, 1]), 2).shape
torch.Size([2, 3])
"""
from __future__ import annotations

from typing import List, Optional

import torch
from e3nn import o3

from tsym.compiler import CartesianReadout, SelfMixHead, scalar_indices

__all__ = ["HEAD_KINDS", "LinearHead", "InvariantHead", "make_head"]

#: The values of ``head_kwargs["kind"]``.
HEAD_KINDS = ("selfmix", "linear", "invariant")


class LinearHead(CartesianReadout):
    """Equivariant linear readout: ``y = W x`` per node, pooled, then ``T = y Q``.

    Parameters
    ----------
    irreps_in, irreps_out, change_of_basis, level, pool
        As for :class:`~tsym.compiler.SelfMixHead`.
    hidden_mul, mlp_hidden, skip
        Ignored (accepted so that a config can switch ``kind`` alone).

    Notes
    -----
    ``W`` is e3nn's ``o3.Linear``: it only maps copies of an irrep to copies of the same irrep, so
    a target irrep that ``irreps_in`` lacks (``3o`` from an ``l <= 2`` backbone, ``1e`` from one
    without ``1e``) is identically zero.  At least one target irrep must be present.
    """

    def __init__(self, irreps_in, irreps_out, change_of_basis, level: str = "structure",
                 pool: str = "sum", hidden_mul: int = 0, mlp_hidden: int = 0, skip: bool = True,
                 sum_rule: bool = False, factor_irreps=None, factor_basis=None,
                 floor: float = 0.0):
        super().__init__(irreps_in, irreps_out, change_of_basis, level, pool, sum_rule,
                         factor_irreps, factor_basis, floor)
        present = {ir for mul, ir in self.irreps_in if mul > 0}
        if not any(ir in present for _, ir in self.irreps_rows):
            raise ValueError(f"a linear head reaches none of the target irreps '{self.irreps_rows}'"
                             f" from irreps_in '{self.irreps_in}'")
        self.linear = o3.Linear(self.irreps_in, self.irreps_rows)

    def node_irreps(self, node_features: torch.Tensor) -> torch.Tensor:
        """``[n_nodes, irreps_in.dim]`` -> per-node rows ``[n_nodes, irreps_rows.dim]``."""
        return self.linear(node_features)

    def forward(self, node_features: torch.Tensor, batch: Optional[torch.Tensor] = None,
                num_graphs: Optional[int] = None) -> torch.Tensor:
        """``[n_nodes, irreps_in.dim]`` -> ``[num_graphs or n_nodes, 3, ..., 3]``."""
        num_graphs = self.checked(node_features, batch, num_graphs, self.linear.weight)
        y = self.pooled(self.node_irreps(node_features), batch, num_graphs)  # [G|N, out_dim]
        return self.to_cartesian(y)  # [G|N, 3, ..., 3]


class InvariantHead(CartesianReadout):
    """Non-equivariant baseline: an MLP of the ``0e`` features predicts the ``3^n`` components.

    Per node ``c = MLP(x_0e)`` ``[3^n]``, pooled per the plan, then projected onto the declared
    symmetry, ``T = Q^T Q c`` (``Q`` has orthonormal rows, so this is the orthogonal projection
    onto the tensors with the spec's index symmetry).  The output has the spec's symmetry but is
    rotation *invariant*: a rotated structure gives the same tensor, not the rotated one.

    Parameters
    ----------
    irreps_in, irreps_out, change_of_basis, level, pool
        As for :class:`~tsym.compiler.SelfMixHead`; ``irreps_in`` must contain ``0e``.
    mlp_hidden : int
        Width of the two hidden layers of the MLP.
    hidden_mul, skip
        Ignored (accepted so that a config can switch ``kind`` alone).
    """

    def __init__(self, irreps_in, irreps_out, change_of_basis, level: str = "structure",
                 pool: str = "sum", hidden_mul: int = 0, mlp_hidden: int = 32, skip: bool = True,
                 sum_rule: bool = False, factor_irreps=None, factor_basis=None,
                 floor: float = 0.0):
        if factor_basis is not None:
            raise ValueError("an invariant head cannot build a positive tensor (it predicts "
                             "Cartesian components, not an equivariant factor L)")
        super().__init__(irreps_in, irreps_out, change_of_basis, level, pool, sum_rule)
        if mlp_hidden < 1:
            raise ValueError(f"mlp_hidden must be >= 1, got {mlp_hidden}")
        scalar_idx = scalar_indices(self.irreps_in)
        if not scalar_idx:
            raise ValueError(f"irreps_in '{self.irreps_in}' has no 0e scalars for an invariant "
                             "head")
        self.register_buffer("scalar_idx", torch.tensor(scalar_idx, dtype=torch.long),
                             persistent=False)  # [n_0e]
        n_cart = 3 ** len(self.cart_shape)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(len(scalar_idx), mlp_hidden), torch.nn.SiLU(),
            torch.nn.Linear(mlp_hidden, mlp_hidden), torch.nn.SiLU(),
            torch.nn.Linear(mlp_hidden, n_cart),
        )

    def forward(self, node_features: torch.Tensor, batch: Optional[torch.Tensor] = None,
                num_graphs: Optional[int] = None) -> torch.Tensor:
        """``[n_nodes, irreps_in.dim]`` -> ``[num_graphs or n_nodes, 3, ..., 3]``."""
        num_graphs = self.checked(node_features, batch, num_graphs, self.mlp[0].weight)
        c = self.mlp(node_features[:, self.scalar_idx])  # [n_nodes, 3**n]
        c = self.pooled(c, batch, num_graphs)  # [G|N, 3**n]
        q = self.q_matrix(c)  # [out_dim, 3**n]
        shape: List[int] = [c.shape[0]] + self.cart_shape
        return ((c @ q.T) @ q).reshape(shape)  # [G|N, 3, ..., 3]  symmetric part of c


_CLASSES = {"selfmix": SelfMixHead, "linear": LinearHead, "invariant": InvariantHead}


def make_head(irreps_in, irreps_out, change_of_basis, level: str = "structure",
              pool: str = "sum", kind: str = "selfmix", **kwargs) -> torch.nn.Module:
    """The head of ``kind`` (one of :data:`HEAD_KINDS`); ``kwargs`` go to its class.

    Raises
    ------
    ValueError
        An unknown ``kind``, or arguments the head rejects.
    TypeError
        An unknown keyword argument.
    """
    if kind not in _CLASSES:
        raise ValueError(f"head kind must be one of {list(HEAD_KINDS)}, got {kind!r}")
    return _CLASSES[kind](irreps_in, irreps_out, change_of_basis, level, pool, **kwargs)
