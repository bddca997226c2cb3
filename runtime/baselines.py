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

from tsym.compiler import SelfMixHead

__all__ = ["HEAD_KINDS", "LinearHead", "InvariantHead", "make_head"]

#: The values of ``head_kwargs["kind"]``.
HEAD_KINDS = ("selfmix", "linear", "invariant")


def _pool(y: torch.Tensor, batch: Optional[torch.Tensor], num_graphs: Optional[int],
          mean: bool) -> torch.Tensor:
    """Sum (or mean) of the rows ``y`` [n_nodes, d] per structure -> [num_graphs, d]."""
    n_nodes = y.shape[0]
    if batch is None:
        batch = torch.zeros(n_nodes, dtype=torch.long, device=y.device)
        num_graphs = 1 if num_graphs is None else num_graphs
    if num_graphs is None:
        num_graphs = int(batch.max().item()) + 1 if n_nodes > 0 else 0
    out = torch.zeros(num_graphs, y.shape[1], dtype=y.dtype, device=y.device)
    out = out.index_add_(0, batch, y)  # [num_graphs, d]
    if mean:
        ones = torch.ones(n_nodes, dtype=y.dtype, device=y.device)
        count = torch.zeros(num_graphs, dtype=y.dtype, device=y.device)
        count = count.index_add_(0, batch, ones).clamp_min(1.0)  # [num_graphs]
        out = out / count[:, None]  # [num_graphs, d]
    return out


class _Readout(torch.nn.Module):
    """What both baselines share: argument checks, the float64 ``Q`` buffer, pooling."""

    def __init__(self, irreps_in, irreps_out, change_of_basis, level: str, pool: str):
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        if irreps_out.dim == 0:
            raise ValueError(f"irreps_out is empty (irreps_in '{irreps_in}')")
        if level not in ("structure", "atom"):
            raise ValueError(f"level must be 'structure' or 'atom', got {level!r}")
        if pool not in ("sum", "mean"):
            raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
        q = torch.as_tensor(change_of_basis).detach().to(torch.float64).clone()
        if q.dim() < 1 or q.shape[0] != irreps_out.dim or any(s != 3 for s in q.shape[1:]):
            raise ValueError(f"change_of_basis must have shape [irreps_out.dim={irreps_out.dim}, "
                             f"3, ..., 3], got {list(q.shape)}")
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.level, self.pool = level, pool
        self.is_atom, self.is_mean = level == "atom", pool == "mean"
        self.cart_shape: List[int] = [3] * (q.dim() - 1)
        self.out_dim = irreps_out.dim
        self.register_buffer("change_of_basis", q)  # [out_dim, 3, ..., 3], float64 always
        self.register_buffer("_q32", q.reshape(q.shape[0], -1).float(), persistent=False)

    def _apply(self, fn, recurse=True):
        """``.to()``/``.double()``/``.float()``: ``Q`` stays float64 (its device follows)."""
        q64 = self.change_of_basis  # [out_dim, 3, ..., 3] float64
        super()._apply(fn, recurse)
        if self.change_of_basis.dtype != torch.float64:
            self.change_of_basis = q64.to(self.change_of_basis.device)
        self._q32 = self.change_of_basis.reshape(self.out_dim, -1).float()  # [out_dim, 3**n]
        return self

    def _q(self, like: torch.Tensor) -> torch.Tensor:
        """``Q`` as ``[out_dim, 3**n]`` in the dtype of ``like``."""
        if like.dtype == torch.float32:
            return self._q32
        return self.change_of_basis.reshape(self.out_dim, -1).to(like.dtype)

    def _pooled(self, y: torch.Tensor, batch: Optional[torch.Tensor],
                num_graphs: Optional[int]) -> torch.Tensor:
        return y if self.is_atom else _pool(y, batch, num_graphs, self.is_mean)


class LinearHead(_Readout):
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
                 pool: str = "sum", hidden_mul: int = 0, mlp_hidden: int = 0, skip: bool = True):
        super().__init__(irreps_in, irreps_out, change_of_basis, level, pool)
        present = {ir for mul, ir in self.irreps_in if mul > 0}
        if not any(ir in present for _, ir in self.irreps_out):
            raise ValueError(f"a linear head reaches none of the target irreps '{self.irreps_out}'"
                             f" from irreps_in '{self.irreps_in}'")
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, node_features: torch.Tensor, batch: Optional[torch.Tensor] = None,
                num_graphs: Optional[int] = None) -> torch.Tensor:
        """``[n_nodes, irreps_in.dim]`` -> ``[num_graphs or n_nodes, 3, ..., 3]``."""
        y = self._pooled(self.linear(node_features), batch, num_graphs)  # [G|N, out_dim]
        shape: List[int] = [y.shape[0]] + self.cart_shape
        return (y @ self._q(y)).reshape(shape)  # [G|N, 3, ..., 3]


class InvariantHead(_Readout):
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
                 pool: str = "sum", hidden_mul: int = 0, mlp_hidden: int = 32, skip: bool = True):
        super().__init__(irreps_in, irreps_out, change_of_basis, level, pool)
        if mlp_hidden < 1:
            raise ValueError(f"mlp_hidden must be >= 1, got {mlp_hidden}")
        scalar_idx: List[int] = []
        for (mul, ir), sl in zip(self.irreps_in, self.irreps_in.slices()):
            if (ir.l, ir.p) == (0, 1):
                scalar_idx += list(range(sl.start, sl.stop))
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
        c = self.mlp(node_features[:, self.scalar_idx])  # [n_nodes, 3**n]
        c = self._pooled(c, batch, num_graphs)  # [G|N, 3**n]
        q = self._q(c)  # [out_dim, 3**n]
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
