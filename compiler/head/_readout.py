"""What every head shares: argument checks, the change of basis ``Q``, pooling, ``y @ Q``.

Like ``head.py`` (which builds on :class:`CartesianReadout`), this file is pasted verbatim into the
standalone modules that ``tsym.compiler.emit`` writes, so it imports only ``typing``, ``torch``,
``e3nn`` and the other pasted files; bad constructor arguments raise plain :class:`ValueError`,
bad inputs at call time :class:`HeadInputError` (see ``_guards.py``).
"""
from typing import List, Optional

import torch
from e3nn import o3

from ._guards import check_head_inputs

__all__ = ["CartesianReadout", "scalar_indices"]


def scalar_indices(irreps: o3.Irreps) -> List[int]:
    """Positions of the ``0e`` components in the layout of ``irreps``."""
    idx: List[int] = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        if (ir.l, ir.p) == (0, 1):
            idx += list(range(sl.start, sl.stop))
    return idx


class CartesianReadout(torch.nn.Module):
    """What every head shares: argument checks, the change of basis ``Q``, pooling, ``y @ Q``.

    ``Q`` [irreps_out.dim, 3, ..., 3] is one float64 buffer that stays float64 through
    ``.float()``/``.double()``; a float32 copy (not saved) serves float32 inputs.  Subclasses
    compute per-node rows ``y`` and call :meth:`pooled` and :meth:`to_cartesian`.
    """

    def __init__(self, irreps_in, irreps_out, change_of_basis, level: str = "structure",
                 pool: str = "sum", sum_rule: bool = False, factor_irreps=None,
                 factor_basis=None, floor: float = 0.0):
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        both = f"irreps_in '{irreps_in}', irreps_out '{irreps_out}'"
        if irreps_out.dim == 0:
            raise ValueError(f"irreps_out is empty ({both})")
        if level not in ("structure", "atom"):
            raise ValueError(f"level must be 'structure' or 'atom', got {level!r}")
        if pool not in ("sum", "mean"):
            raise ValueError(f"pool must be 'sum' or 'mean', got {pool!r}")
        q = torch.as_tensor(change_of_basis).detach().to(torch.float64).clone()
        if q.dim() < 1 or q.shape[0] != irreps_out.dim or any(s != 3 for s in q.shape[1:]):
            raise ValueError(
                f"change_of_basis must have shape [irreps_out.dim={irreps_out.dim}, 3, ..., 3], "
                f"got {list(q.shape)} ({both})"
            )
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.irreps_in_str, self.in_dim = str(irreps_in), irreps_in.dim  # for the input checks
        self.level, self.pool = level, pool
        self.is_atom, self.is_mean = level == "atom", pool == "mean"
        self.cart_shape: List[int] = [3] * (q.dim() - 1)
        self.out_dim = irreps_out.dim
        self.register_buffer("change_of_basis", q)  # [out_dim, 3, ..., 3], float64 always
        # float32 copy for the common case, not saved in the state dict (rebuilt from Q)
        self.register_buffer("_q32", q.reshape(q.shape[0], -1).float(), persistent=False)
        if sum_rule and level != "atom":
            raise ValueError(f"a sum rule needs level 'atom', got {level!r} ({both})")
        self.sum_rule = bool(sum_rule)
        self.per_structure = not self.is_atom or self.sum_rule  # reads batch
        self._factor_setup(factor_irreps, factor_basis, float(floor), q, both)

    def _factor_setup(self, factor_irreps, factor_basis, floor: float, q: torch.Tensor,
                      both: str) -> None:
        """``T = L L^T + floor I`` from a factor ``L`` (see :meth:`square`), or nothing."""
        n = q.dim() - 1
        self.has_factor = factor_basis is not None
        self.irreps_rows = o3.Irreps(factor_irreps) if self.has_factor else self.irreps_out
        self.floor = floor
        self.half = 3 ** (n // 2)  # rows of the matrix T: 3 (rank 2) or 9 (rank 4)
        qf = torch.zeros(0, 3 ** n, dtype=torch.float64)
        eye = torch.zeros(3 ** n, dtype=torch.float64)
        if self.has_factor:
            qf = torch.as_tensor(factor_basis).detach().to(torch.float64).reshape(-1, 3 ** n)
            if n not in (2, 4) or qf.shape[0] != self.irreps_rows.dim:
                raise ValueError(f"factor_basis must be [{self.irreps_rows.dim}, 3, ..., 3] of "
                                 f"rank 2 or 4, got {list(qf.shape)} ({both})")
            d = torch.eye(3, dtype=torch.float64)
            if n == 2:
                eye = d.reshape(-1)  # [9] delta_ij
            else:  # (delta_ik delta_jl + delta_il delta_jk) / 2: the 6x6 Mandel identity
                eye = 0.5 * (torch.einsum("ik,jl->ijkl", d, d) + torch.einsum("il,jk->ijkl", d, d))
                eye = eye.reshape(-1)  # [81]
        elif floor != 0.0:
            raise ValueError(f"floor needs a factor_basis (a positive head), got {floor} ({both})")
        # Q_L [factor dim, 3^n] and the irreps coordinates of floor * I [out_dim]: constants
        self.register_buffer("factor_basis", qf, persistent=False)
        self.register_buffer("floor_coords", floor * (q.reshape(q.shape[0], -1) @ eye),
                             persistent=False)

    def square(self, y: torch.Tensor) -> torch.Tensor:
        """Factor rows ``[n, factor dim]`` -> rows of ``L L^T`` ``[n, out_dim]``.

        ``L`` is ``[n, A, A]`` (``A`` = 3 for rank 2, 9 = the symmetric index pairs for rank 4,
        where the sum over all nine ``(m, n)`` is the Mandel inner product), and ``L L^T`` lies
        in the span of ``Q`` (symmetric; elastic-type for rank 4), so ``Q`` gives its rows.
        """
        qf = self.factor_basis.to(y.dtype)  # [factor dim, 3^n]
        lmat = (y @ qf).reshape(y.shape[0], self.half, self.half)  # [n, A, A]
        t = torch.bmm(lmat, lmat.transpose(1, 2)).reshape(y.shape[0], -1)  # [n, 3^n]
        return t @ self.q_matrix(y).T  # [n, out_dim]

    def _apply(self, fn, recurse=True):
        """``.to()``/``.double()``/``.float()``/...: ``Q`` stays float64 (its device follows)."""
        q64 = self.change_of_basis  # [out_dim, 3, ..., 3] float64
        super()._apply(fn, recurse)
        if self.change_of_basis.dtype != torch.float64:
            self.change_of_basis = q64.to(self.change_of_basis.device)
            self.factor_basis = self.factor_basis.double()  # constants: float64, cast in use
            self.floor_coords = self.floor_coords.double()
        self._q32 = self.change_of_basis.reshape(self.out_dim, -1).float()  # [out_dim, 3**n]
        return self

    def checked(self, x: torch.Tensor, batch: Optional[torch.Tensor],
                num_graphs: Optional[int], weight: torch.Tensor) -> Optional[int]:
        """Check the inputs of ``forward`` (width against ``irreps_in``, the dtype of the
        parameter ``weight``, ``batch``, ``num_graphs``); ``num_graphs``, filled in when None."""
        return check_head_inputs(x, batch, num_graphs, self.irreps_in_str, self.in_dim,
                                 weight.dtype, self.per_structure)

    def q_matrix(self, like: torch.Tensor) -> torch.Tensor:
        """``Q`` as ``[out_dim, 3**n]`` in the dtype of ``like``."""
        if like.dtype == torch.float32:
            return self._q32
        return self.change_of_basis.reshape(self.out_dim, -1).to(like.dtype)

    def pooled(self, y: torch.Tensor, batch: Optional[torch.Tensor],
               num_graphs: Optional[int]) -> torch.Tensor:
        """Rows per node ``[n_nodes, d]`` -> per structure ``[num_graphs, d]`` (sum or mean);
        for ``level="atom"`` one row per node, minus its structure's mean with ``sum_rule``.
        ``batch`` None: one structure.  A positive head's factor rows are squared first."""
        if self.has_factor:
            y = self.square(y)  # [n_nodes, out_dim]
        if self.is_atom:
            if self.sum_rule:
                y = self._centred(y, batch, num_graphs)
            return y
        n_nodes = y.shape[0]
        if batch is None:
            batch = torch.zeros(n_nodes, dtype=torch.long, device=y.device)
            if num_graphs is None:
                num_graphs = 1
        if num_graphs is None:
            num_graphs = int(batch.max().item()) + 1 if n_nodes > 0 else 0
        out = torch.zeros(num_graphs, y.shape[1], dtype=y.dtype, device=y.device)
        out = out.index_add_(0, batch, y)  # [num_graphs, d]
        if self.is_mean:
            ones = torch.ones(n_nodes, dtype=y.dtype, device=y.device)
            count = torch.zeros(num_graphs, dtype=y.dtype, device=y.device)
            count = count.index_add_(0, batch, ones).clamp_min(1.0)  # [num_graphs]
            out = out / count[:, None]  # [num_graphs, d]
        return out

    def _centred(self, y: torch.Tensor, batch: Optional[torch.Tensor],
                 num_graphs: Optional[int]) -> torch.Tensor:
        """``y`` minus the mean row of its structure: the rows of each structure sum to zero.

        Linear in ``y`` and the same map on every irrep copy, so equivariant; the means are
        accumulated in float64 and rounded once, so a float32 sum stays at a few ulps per atom.
        """
        if batch is None:
            return y - y.double().mean(dim=0, keepdim=True).to(y.dtype)  # [n_nodes, d]
        if num_graphs is None:
            num_graphs = int(batch.max().item()) + 1 if y.shape[0] > 0 else 0
        total = torch.zeros(num_graphs, y.shape[1], dtype=torch.float64, device=y.device)
        total = total.index_add_(0, batch, y.double())  # [num_graphs, d]
        count = torch.zeros(num_graphs, dtype=torch.float64, device=y.device)
        count = count.index_add_(0, batch, torch.ones_like(batch, dtype=torch.float64))
        mean = total / count.clamp_min(1.0)[:, None]  # [num_graphs, d]
        return y - mean.to(y.dtype)[batch]  # [n_nodes, d]

    def to_cartesian(self, y: torch.Tensor) -> torch.Tensor:
        """Irreps rows ``[n, out_dim]`` -> Cartesian ``[n, 3, ..., 3]`` (plus ``floor I``)."""
        if self.has_factor:
            y = y + self.floor_coords.to(y.dtype)  # [n, out_dim]
        shape: List[int] = [y.shape[0]] + self.cart_shape
        return (y @ self.q_matrix(y)).reshape(shape)
