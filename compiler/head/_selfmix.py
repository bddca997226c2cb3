"""The node-wise self-mix output head: node irreps -> target irreps -> pool -> Cartesian tensor.

This file is pasted verbatim (with every module of ``compiler/head/``) into the standalone modules
that ``tsym.compiler.emit`` writes, so it imports only ``math``, ``typing``, ``torch``, ``e3nn``
and those files (no tsym, no sympy, no numpy) and raises plain :class:`ValueError` when built
with bad arguments (``HeadInputError`` when called with bad inputs).

The layer follows the node-wise self-mix layer of J. Am. Chem. Soc. 2025, 147, 47044 (XPaiNN), per
node ``x`` with irreps ``irreps_in``:

1. ``u = U x``, ``v = V x``: two equivariant linear maps to ``hidden_mul x`` every ``(l, p)`` used;
2. ``h = LayerNorm(u (x) v)``: channel-wise ``"uvu"`` tensor product (``h_u = sum_v w_uv u_u (x)
   v_v`` per path, shared learned path weights) to every irrep ``(l, p)`` with
   ``l <= max(lmax_out, lmax_in)``, then an equivariant layer norm;
3. ``z = h (x) h``: strictly channel-wise (e3nn ``"uuu"``) self tensor product whose path weights
   come per node from an MLP of the node's ``0e`` features (the node-wise part), only into the
   target irreps (``uuu`` keeps the per-node weights at ``hidden_mul`` per path);
4. ``y = W z + S x``: an equivariant linear map to exactly ``irreps_out``, plus a linear skip
   ``S`` from ``irreps_in`` (see :class:`SelfMixHead` for why the skip is kept).

Why ``"uvu"`` and not ``"uuu"`` in step 2: with ``"uuu"`` every channel of ``h`` is built from the
two vectors ``u_u, v_u`` only, so e.g. a pseudo-scalar ``0o`` from ``0e + 1o`` inputs (a triple
product) vanishes identically; ``"uvu"`` uses different mixtures of ``v`` per path and reaches it.
It is computed as ``u_u (x) (W_p V x)_u``: the per-path mixture ``W_p V`` is folded into one
linear map per path (``lin_v``, same function class since ``V`` is a free linear map), followed by
an e3nn ``"uuu"`` product -- much faster than e3nn's ``"uvu"``, which forms all ``hidden_mul**2``
channel pairs.

Built from e3nn's own ``o3.Linear`` and ``o3.TensorProduct``: with torch 2.13 / e3nn 0.6.0 (default
``jit_mode="eager"``) they script, compile, pickle and deepcopy.
"""
import math
from typing import List, Optional, Tuple

import torch
from e3nn import o3

from ._fused import FusedSelfMix
from ._guards import HeadInputError
from ._readout import CartesianReadout, scalar_indices

__all__ = ["SelfMixHead", "EquivariantLayerNorm", "HeadInputError"]

_Ir = Tuple[int, int]  # (l, parity) of an irrep, parity +1 (e) or -1 (o)


def _products(a: _Ir, b: _Ir, lcap: int) -> List[_Ir]:
    """Irreps of ``a (x) b`` with ``l <= lcap``, in increasing ``l``."""
    return [(l, a[1] * b[1]) for l in range(abs(a[0] - b[0]), min(a[0] + b[0], lcap) + 1)]


def _name(ir: _Ir) -> str:
    return f"{ir[0]}{'e' if ir[1] == 1 else 'o'}"


def _plan_paths(irreps_in: o3.Irreps, irreps_out: o3.Irreps):
    """Choose the irreps and tensor-product paths of the two self-mixing rounds.

    Returns ``(hidden, tp1, mid, tp2, targets)``: sorted lists of ``(l, p)`` and path lists;
    ``tp1`` holds ordered pairs ``(i, j, k)`` (``hidden[i] (x) hidden[j] -> mid[k]``) and ``tp2``
    unordered pairs ``(i, j, k)`` with ``i <= j`` (``mid[i] (x) mid[j] -> targets[k]``).  Paths a
    channel-wise product of ``h`` with itself cannot use (``i == j`` with odd ``l``: the product
    is antisymmetric there and vanishes) are left out.  Raises ``ValueError`` for an unreachable
    target irrep.
    """
    targets = sorted({(ir.l, ir.p) for _, ir in irreps_out})
    lcap = max(irreps_out.lmax, irreps_in.lmax)
    hidden_all = sorted({(ir.l, ir.p) for mul, ir in irreps_in if mul > 0})
    mid_all = sorted({c for a in hidden_all for b in hidden_all for c in _products(a, b, lcap)})
    target_set = set(targets)
    tp2_all = [
        (i, j, c)
        for i, a in enumerate(mid_all)
        for j, b in enumerate(mid_all)
        if i <= j
        for c in _products(a, b, 2 * lcap)
        if c in target_set and not (i == j and c[0] % 2 == 1)
    ]
    missing = [t for t in targets if t not in {c for _, _, c in tp2_all}]
    if missing:
        raise ValueError(
            f"target irreps {[_name(t) for t in missing]} of irreps_out '{irreps_out}' are not "
            f"reachable from irreps_in '{irreps_in}' by two self-mixing tensor products "
            f"(intermediate l <= {lcap}; reachable parities come from the parities of irreps_in)"
        )
    # prune: keep only intermediate irreps that feed a target, and inputs that feed those
    mid = sorted({mid_all[i] for i, _, _ in tp2_all} | {mid_all[j] for _, j, _ in tp2_all})
    tp2 = [(mid.index(mid_all[i]), mid.index(mid_all[j]), targets.index(c)) for i, j, c in tp2_all]
    pairs1 = [
        (a, b, c) for a in hidden_all for b in hidden_all for c in _products(a, b, lcap) if c in mid
    ]
    hidden = sorted({a for a, _, _ in pairs1} | {b for _, b, _ in pairs1})
    tp1 = [(hidden.index(a), hidden.index(b), mid.index(c)) for a, b, c in pairs1]
    return hidden, tp1, mid, tp2, targets


def _irreps(mul: int, irs: List[_Ir]) -> o3.Irreps:
    return o3.Irreps([(mul, ir) for ir in irs])


def _exact_w3j(module: torch.nn.Module) -> None:
    """Refill e3nn's Clebsch-Gordan buffers from ``o3.wigner_3j`` in float64, rounded once.

    e3nn's tensor products store ``o3.wigner_3j(l1, l2, l3)`` as buffers named
    ``_w3j_{l1}_{l2}_{l3}`` in the dtype they were built in, so ``.double()`` of a float32-built
    module would carry float32 rounding (equivariance ~1e-8).  They are constants: also taken out
    of the state dict, so checkpoints hold only learned weights and ``Q``.
    """
    with torch.no_grad():
        for mod in module.modules():
            for name, buf in list(mod._buffers.items()):
                parts = name.split("_")
                if buf is None or len(parts) != 5 or parts[:2] != ["", "w3j"]:
                    continue
                if not all(p.isdigit() for p in parts[2:]):
                    continue
                l1, l2, l3 = int(parts[2]), int(parts[3]), int(parts[4])
                if tuple(buf.shape) != (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1):
                    continue
                exact = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)  # [2l1+1, 2l2+1, 2l3+1]
                buf.copy_(exact.to(dtype=buf.dtype, device=buf.device))
                mod._non_persistent_buffers_set.add(name)


class EquivariantLayerNorm(torch.nn.Module):
    """Layer norm of equivariant features ``[n_nodes, irreps.dim]`` (e3nn layout, any irreps).

    Per irrep block ``mul x ir``: ``0e`` channels are centred first; the block is divided by the
    root mean square of all its components (the RMS over channels of their component-normalised
    norms ``|x_u|^2 / (2l+1)``) plus ``eps``; then each channel is scaled by a learned weight and
    ``0e`` channels get a learned bias.  No other block gets a bias (it would break equivariance
    for ``l > 0`` and parity for ``0o``).  The self-mix head and the XPaiNN backbone share it.

    Parameters
    ----------
    irreps : o3.Irreps or str
        The layout of the features.
    eps : float
        Added to the mean square before the inverse square root.  Not tiny on purpose: a block
        that vanishes by a node's site symmetry holds only rounding noise, which the norm would
        otherwise scale up by ``1/sqrt(eps)`` (float32 crystal-symmetry errors above 1e-5).
    """

    def __init__(self, irreps, eps: float = 1e-2):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        self.eps = eps
        # plain ints per block (torch.compile cannot guard on e3nn Irrep objects)
        self.muls: List[int] = [mul for mul, _ in self.irreps]
        self.dims: List[int] = [ir.dim for _, ir in self.irreps]
        self.even: List[bool] = [(ir.l, ir.p) == (0, 1) for _, ir in self.irreps]
        self.sizes: List[int] = [mul * ir.dim for mul, ir in self.irreps]
        channel: List[int] = []  # the channel (0..num_irreps-1) of each component
        for k, (mul, ir) in enumerate(self.irreps):
            start = sum(self.muls[:k])
            channel += [start + u for u in range(mul) for _ in range(ir.dim)]
        self.register_buffer("channel", torch.tensor(channel, dtype=torch.long), persistent=False)
        scalars = scalar_indices(self.irreps)  # [n_0e] positions of the 0e components
        self.register_buffer("scalar_idx", torch.tensor(scalars, dtype=torch.long),
                             persistent=False)
        self.weight = torch.nn.Parameter(torch.ones(self.irreps.num_irreps))  # [num_irreps]
        self.bias = torch.nn.Parameter(torch.zeros(len(scalars)))  # [n_0e]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Older backbone checkpoints hold no ``bias`` when the irreps have no ``0e``."""
        if self.bias.numel() == 0:
            state_dict.setdefault(prefix + "bias", self.bias.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [n_nodes, irreps.dim] -> [n_nodes, irreps.dim]."""
        parts: List[torch.Tensor] = []
        blocks = torch.split(x, self.sizes, dim=-1)
        for k in range(len(self.sizes)):
            f = blocks[k].reshape(-1, self.muls[k], self.dims[k])  # [n_nodes, mul, 2l+1]
            if self.even[k]:
                f = f - f.mean(dim=1, keepdim=True)
            f = f * torch.rsqrt(f.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps)
            parts.append(f.reshape(-1, self.sizes[k]))
        y = torch.cat(parts, dim=-1) * self.weight.index_select(0, self.channel)  # [n, dim]
        if self.bias.numel() > 0:
            bias = torch.zeros(y.shape[1], dtype=y.dtype, device=y.device)
            y = y + bias.index_copy(0, self.scalar_idx, self.bias)  # [n_nodes, dim]
        return y


class SelfMixHead(CartesianReadout):
    """Node-wise self-mix head: node features -> target irreps -> pooling -> Cartesian tensor.

    Parameters
    ----------
    irreps_in : o3.Irreps or str
        Irreps of the node features; must contain ``0e`` and have ``lmax >= 1``.
    irreps_out : o3.Irreps or str
        Target irreps, e.g. ``"2x0e+2x2e+1x4e"`` (the layout of the rows of ``change_of_basis``).
    change_of_basis : torch.Tensor
        ``Q`` of shape ``[irreps_out.dim, 3, ..., 3]`` (``n`` index dims); stored once as a float64
        buffer.  The Cartesian output is ``T[..., i1..in] = sum_k y[..., k] Q[k, i1..in]``.
    level : {"structure", "atom"}
        ``"atom"``: one tensor per node; ``"structure"``: pooled over the nodes of each structure.
    pool : {"sum", "mean"}
        Pooling of a ``"structure"`` head, done in the irreps basis before ``Q``.
    hidden_mul : int
        Channels of every hidden irrep.
    mlp_hidden : int
        Width of the MLP that turns the node's ``0e`` features into path weights.
    skip : bool
        Add an equivariant linear map ``irreps_in -> irreps_out``.  Kept by default: it is the
        plain linear readout (e.g. a dipole from ``1o`` features) that the self-mix part, built
        from layer-normed products, cannot represent exactly; in a small held-out fit of a rank-2
        target (600 random structures, targets linear + quadratic in the features) the skip
        lowered the test error in every setting tried.  Target irreps absent from ``irreps_in``
        get nothing from it.
    sum_rule, factor_irreps, factor_basis, floor
        The physics of the plan (``plan.head_options()``), enforced by
        :class:`CartesianReadout`: atom tensors of each structure summing to zero; a positive
        tensor ``L L^T + floor I`` from per-node factor rows ``L`` (the head then produces
        ``factor_irreps`` per node instead of ``irreps_out``).

    Notes
    -----
    ``Q`` is one float64 buffer that stays float64 through ``.float()``/``.double()`` (a float32
    copy, not saved, serves float32 inputs; other dtypes cast it in ``forward``).  e3nn's
    Clebsch-Gordan constants are refilled in float64 precision on every dtype change, so a
    float32-built head made ``.double()`` is equivariant to float64 precision.  The state dict
    holds the learned weights, e3nn's ``output_mask`` buffers and ``change_of_basis`` only.

    Examples
    --------
    >>> q = torch.eye(3, dtype=torch.float64)  # a polar vector: irreps 1o, x y z order
    >>> head = SelfMixHead("4x0e+2x1o", "1x1o", q, hidden_mul=2, mlp_hidden=4)
    >>> head(torch.randn(5, 10), torch.tensor([0, 0, 1, 1, 1]), 2).shape
    torch.Size([2, 3])
    """

    def __init__(self, irreps_in, irreps_out, change_of_basis, level: str = "structure",
                 pool: str = "sum", hidden_mul: int = 16, mlp_hidden: int = 32, skip: bool = True,
                 sum_rule: bool = False, factor_irreps=None, factor_basis=None,
                 floor: float = 0.0):
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        both = f"irreps_in '{irreps_in}', irreps_out '{irreps_out}'"
        scalar_idx = scalar_indices(irreps_in)
        n_scalars = len(scalar_idx)
        if n_scalars == 0:
            raise ValueError(f"irreps_in has no 0e scalars to drive the node-wise weights ({both})")
        if irreps_in.lmax < 1:
            raise ValueError(f"irreps_in needs lmax >= 1 for a self-mix head, got lmax 0 ({both})")
        if hidden_mul < 1 or mlp_hidden < 1:
            raise ValueError(
                f"hidden_mul and mlp_hidden must be >= 1, got {hidden_mul}, {mlp_hidden}"
            )
        super().__init__(irreps_in, irreps_out, change_of_basis, level, pool, sum_rule,
                         factor_irreps, factor_basis, floor)
        rows = self.irreps_rows  # irreps_out, or the factor L of a positive head
        hidden, tp1, mid, tp2, targets = _plan_paths(irreps_in, rows)
        scalar_idx_t = torch.tensor(scalar_idx, dtype=torch.long)  # [n_0e]
        self.register_buffer("scalar_idx", scalar_idx_t, persistent=False)

        m = hidden_mul
        self.irreps_hidden = _irreps(m, hidden)
        self.irreps_mid = _irreps(m, mid)
        self.irreps_mix = _irreps(m, targets)
        self.lin_u = o3.Linear(irreps_in, self.irreps_hidden)
        # uvu as uuu: one V-mixture per path p = (i, j, k), v_p = W_p V x of type hidden[j]
        self.irreps_v = _irreps(m, [hidden[j] for _, j, _ in tp1])
        self.lin_v = o3.Linear(irreps_in, self.irreps_v)
        self.tp1 = o3.TensorProduct(
            self.irreps_hidden, self.irreps_v, self.irreps_mid,
            [(i, p, k, "uuu", True) for p, (i, _, k) in enumerate(tp1)],
            internal_weights=True, shared_weights=True,
        )
        self.norm = EquivariantLayerNorm(_irreps(m, mid))
        self.tp2 = o3.TensorProduct(
            self.irreps_mid, self.irreps_mid, self.irreps_mix,
            [(i, j, k, "uuu", True) for i, j, k in tp2],
            internal_weights=False, shared_weights=False,
        )
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(n_scalars, mlp_hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(mlp_hidden, self.tp2.weight_numel),
        )
        # per-node path weights of order one at initialisation, like e3nn's internal weights
        with torch.no_grad():
            self.mlp[2].weight.mul_(math.sqrt(3.0))
        self.lin_out = o3.Linear(self.irreps_mix, rows)
        shares = any(ir in {i for _, i in irreps_in} for _, ir in rows)
        self.has_skip = bool(skip and shares)
        self.skip = o3.Linear(irreps_in, rows) if self.has_skip else torch.nn.Identity()
        # the arithmetic of node_irreps, fused (compiler/head/_fused.py); holds no parameters
        self.fused = FusedSelfMix(self, hidden, tp1, mid, tp2, targets)
        _exact_w3j(self)

    def _apply(self, fn, recurse=True):
        """Also recompute e3nn's Clebsch-Gordan constants in their new dtype (rounded once)."""
        super()._apply(fn, recurse)
        _exact_w3j(self)
        return self

    def __setstate__(self, state):
        """Unpickling / deepcopy: e3nn rebuilds its code modules; mark their constants again."""
        super().__setstate__(state)
        _exact_w3j(self)

    def node_irreps(self, node_features: torch.Tensor) -> torch.Tensor:
        """Per-node target irreps: ``[n_nodes, irreps_in.dim]`` -> ``[n_nodes, irreps_out.dim]``"""
        w = self.mlp(node_features[:, self.scalar_idx])  # [n_nodes, tp2.weight_numel]
        # = lin_out(tp2(h, h, w)) with h = norm(tp1(lin_u(x), lin_v(x))), computed by the
        # fused arithmetic from the same weights (e3nn's modules hold them, and define the math)
        y = self.fused(node_features, self.lin_u.weight, self.lin_v.weight, self.tp1.weight,
                       self.norm.weight, self.norm.bias, w, self.lin_out.weight)  # [n, out]
        if self.has_skip:
            y = y + self.skip(node_features)  # [n_nodes, irreps_out.dim]
        return y

    def forward(self, node_features: torch.Tensor, batch: Optional[torch.Tensor] = None,
                num_graphs: Optional[int] = None) -> torch.Tensor:
        """Cartesian tensors per structure (or per node for ``level="atom"``).

        Parameters
        ----------
        node_features : torch.Tensor
            ``[n_nodes, irreps_in.dim]``, float32 or float64 (the head's parameter dtype).
        batch : torch.Tensor, optional
            ``[n_nodes]`` long, the structure of each node; ``None``: one structure.
        num_graphs : int, optional
            Number of structures; default ``batch.max() + 1`` (1 when ``batch`` is None).

        Returns
        -------
        torch.Tensor
            ``[num_graphs, 3, ..., 3]`` (``"structure"``) or ``[n_nodes, 3, ..., 3]`` (``"atom"``).

        Raises
        ------
        HeadInputError
            Features whose width is not ``irreps_in.dim`` or whose dtype is not the head's, a
            ``batch`` that is not an integer tensor of one index per node, a structure index
            ``>= num_graphs``, or ``num_graphs > 1`` without ``batch``.
        """
        num_graphs = self.checked(node_features, batch, num_graphs, self.lin_u.weight)
        y = self.pooled(self.node_irreps(node_features), batch, num_graphs)  # [G|N, out_dim]
        return self.to_cartesian(y)  # [n_graphs or n_nodes, 3, ..., 3]
