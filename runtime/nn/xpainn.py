"""XPaiNN, the equivariant message-passing backbone of tsym (PaiNN extended to any degree l).

Follows XPaiNN of Chen et al. (XequiNet, J. Chem. Theory Comput. 2024), written for e3nn 0.6
conventions: l = 1 in (x, y, z) order, ``component`` normalisation, no axis reordering.

State of atom i: scalars ``s_i`` [num_scalars] and equivariant features ``v_i`` [irreps.dim]
(``irreps`` sorted, one entry per l, parity (-1)^l, e.g. ``128x0e+64x1o+32x2e``), ``v_i = 0`` at start.
With ``e_ij`` the edge embedding (spherical harmonics ``Y(r_ij)``, Bessel basis ``b(r_ij)``,
envelope ``f(r_ij)``), each of the ``num_blocks`` blocks is::

    message:  [g_v, g_Y, m] = MLP(LN(s)_j) * (W b(r_ij)) f(r_ij)          (split into K, K, S parts)
              s_i += sum_j m ;  v_i += sum_j g_v * ELN(v)_j + g_Y * Y(r_ij)
    update:   U, V = Linear_U(ELN(v_i)), Linear_V(ELN(v_i))                 (equivariant linear maps)
              [a_vv, a_sv, a_ss] = MLP([LN(s_i), |V|])
              v_i += a_vv * U ;  s_i += a_sv * Linear(<U, V>) + a_ss

where K = irreps.num_irreps, a gate of K values scales each channel of each l (the harmonics of
degree l broadcast to the channels of that l), ``|V|`` and ``<U, V>`` are per-channel norms and
dot products (the latter scaled by 1/sqrt(2l+1)), LN is ``torch.nn.LayerNorm`` and ELN the
equivariant layer norm.  In the first block ``v = 0``, so its message has no ``g_v`` part.

Output: ``NODE_FEATURES = cat([s, v])`` with ``irreps_out = (Sx0e + irreps).simplify()``, e.g.
``256x0e+64x1o+32x2e`` for the defaults (the 128 scalars, then the 128x0e of ``v``, ...).
"""
from __future__ import annotations

from typing import Mapping

import torch
from e3nn import o3

from tsym.compiler import EquivariantLayerNorm
from tsym.runtime import keys
from tsym.runtime.graph import edge_vectors
from tsym.runtime.nn._xpainn_edges import KERNEL_CHUNK, EdgePlan, edge_sums
from tsym.runtime.nn._xpainn_update import linear_plan, update
from tsym.runtime.nn.embedding import (
    BackboneConfigError, EdgeEmbedding, ElementEmbedding, check_irreps, sh_irreps_for,
)

__all__ = ["XPaiNN", "MessageBlock", "UpdateBlock", "edge_vectors", "COMPILE_DEFAULTS"]

#: ``torch.compile`` keywords of :meth:`XPaiNN.compile_blocks` and of
#: ``TensorModel.compile_for_speed`` (which also compiles the heads with them).
COMPILE_DEFAULTS = {"dynamic": True, "fullgraph": True, "isolate_recompiles": True}

#: Edges per chunk of a message block (``XPaiNN(edge_chunk=...)``).  The ``[chunk, hidden]``
#: temporaries then stay in the CPU caches, so the time per edge stays flat as structures grow;
#: and without gradients a large cell needs no per-edge memory beyond its edge list and
#: embedding (measured in ``benchmarks/README.md``).
EDGE_CHUNK = 1024


def _parse_irreps(owner: str, field: str, irreps) -> o3.Irreps:
    try:
        return o3.Irreps(irreps)
    except (ValueError, TypeError, AssertionError):
        raise BackboneConfigError(f"{owner}: field '{field}' is not an e3nn irreps string: "
                                  f"{irreps!r} (write e.g. '16x0e+8x1o+4x2e')") from None


def _check_node_irreps(owner: str, field: str, irreps: o3.Irreps | str) -> o3.Irreps:
    irreps = _parse_irreps(owner, field, irreps)
    canonical = irreps.sort().irreps.simplify()
    if len(irreps) == 0 or any(mul < 1 for mul, _ in irreps):
        raise BackboneConfigError(
            f"{owner}: field '{field}' needs a non-empty irreps without zero multiplicities, "
            f"got '{irreps}'")
    if irreps != canonical:
        raise BackboneConfigError(
            f"{owner}: field '{field}' irreps '{irreps}' must be sorted by l with one entry per irrep;"
            f" write '{canonical}'")
    for _, ir in irreps:
        if ir.p != (-1) ** ir.l:
            good = o3.Irrep(ir.l, (-1) ** ir.l)
            raise BackboneConfigError(
                f"{owner}: field '{field}' irreps '{irreps}' contain {ir}, but the edge spherical "
                f"harmonics of l={ir.l} are {good}; use {good}")
    return irreps


def _check_scalars(owner: str, field: str, irreps: o3.Irreps | str) -> int:
    irreps = _parse_irreps(owner, field, irreps)
    if len(irreps) != 1 or irreps[0].ir != o3.Irrep("0e") or irreps[0].mul < 1:
        raise BackboneConfigError(
            f"{owner}: field '{field}' must be scalars 'Nx0e' with N >= 1, got '{irreps}'")
    return irreps[0].mul


def _irreps_in(owner: str, irreps_in: Mapping[str, o3.Irreps | str], fields: tuple[str, ...]):
    missing = [f for f in fields if f not in irreps_in]
    if missing:
        raise BackboneConfigError(f"{owner}: irreps_in lacks field(s) {', '.join(missing)}")
    return {f: o3.Irreps(irreps_in[f]) for f in fields}


def _per_l(irreps: o3.Irreps) -> tuple[list[int], list[int], list[int]]:
    """Channels, 2l+1 and block width ``mul (2l+1)`` of each degree l (irreps sorted, one entry
    per l: :func:`_check_node_irreps`)."""
    return ([mul for mul, _ in irreps], [ir.dim for _, ir in irreps],
            [mul * ir.dim for mul, ir in irreps])


def _mlp(d_in: int, d_hidden: int, d_out: int) -> torch.nn.Sequential:
    mlp = torch.nn.Sequential(torch.nn.Linear(d_in, d_hidden), torch.nn.SiLU(),
                              torch.nn.Linear(d_hidden, d_out))
    torch.nn.init.zeros_(mlp[0].bias)
    torch.nn.init.zeros_(mlp[2].bias)
    return mlp


class MessageBlock(torch.nn.Module):
    """XPaiNN message: neighbours j -> centre i, summed with ``index_add``.

    Parameters
    ----------
    irreps_in : mapping
        ``{"scalars": "Sx0e", "equivariant": irreps, "edge_sh": sh_irreps_for(irreps),
        "edge_radial": "Bx0e"}``; checked here.
    first : bool
        The first block, where ``v = 0``: no gate on the neighbours' equivariant features.

    Notes
    -----
    The per-edge work is most of the backbone's time (``benchmarks/backbone_vs_e3nn.py``), so:
    the edge products are written per degree l in an m-major layout ``[E, 2l+1, mul]`` (channels
    innermost; see :meth:`_messages`); gathers are ``index_select`` and splits ``torch.split``
    (dense backward); and ``edge_chunk`` edges are processed at a time (``forward``'s argument,
    None = all at once), which keeps the ``[chunk, hidden]`` temporaries in the caches and, without
    gradients, means the per-edge temporaries of a large structure never exist whole.  Chunks
    accumulate into the node sums in place; the result is the same sum.  Eager training (gradients
    on, not traced, ``edge_kernel`` true) runs the per-edge work as one autograd function with a
    hand-written backward (``_xpainn_edges.py``: no per-edge activations kept, at most
    ``KERNEL_CHUNK`` edges at a time whatever ``edge_chunk`` asks; again the same sums).
    """

    def __init__(self, irreps_in: Mapping[str, o3.Irreps | str], first: bool = False):
        super().__init__()
        owner = "MessageBlock"
        self.irreps_in = _irreps_in(owner, irreps_in,
                                    (keys.SCALARS, keys.EQUIVARIANT, keys.EDGE_SH, keys.EDGE_RADIAL))
        num_scalars = _check_scalars(owner, keys.SCALARS, self.irreps_in[keys.SCALARS])
        irreps = _check_node_irreps(owner, keys.EQUIVARIANT, self.irreps_in[keys.EQUIVARIANT])
        sh_irreps = sh_irreps_for(irreps)
        check_irreps(owner, keys.EDGE_SH, sh_irreps, self.irreps_in[keys.EDGE_SH])
        num_basis = _check_scalars(owner, keys.EDGE_RADIAL, self.irreps_in[keys.EDGE_RADIAL])
        self.irreps_out = {keys.SCALARS: self.irreps_in[keys.SCALARS], keys.EQUIVARIANT: irreps}
        # per degree l (sorted, one entry each; sh_irreps has the same degrees in the same order)
        self.muls, self.dims, self.feature_sizes = _per_l(irreps)
        # [E, hidden] -> gates on v_j per l (none in the first block), gates on Y per l, scalars
        self.pieces = ([] if first else self.muls) + self.muls + [num_scalars]
        self.scalar_norm = torch.nn.LayerNorm(num_scalars)
        self.equivariant_norm = None if first else EquivariantLayerNorm(irreps)
        self.scalar_mlp = _mlp(num_scalars, num_scalars, sum(self.pieces))
        self.radial_linear = torch.nn.Linear(num_basis, sum(self.pieces))
        torch.nn.init.zeros_(self.radial_linear.bias)
        #: eager training through :func:`edge_sums` (``compile_blocks`` turns it off: inductor
        #: fuses the plain path itself)
        self.edge_kernel = True

    def forward(self, s: torch.Tensor, v: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor,
                envelope: torch.Tensor, edge_index: torch.Tensor, edge_chunk: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.scalar_mlp(self.scalar_norm(s))  # [N, hidden]
        v_t = None  # the normalised features in the m-major layout the edge loop reads
        if self.equivariant_norm is not None:
            v_t = self._transpose(self.equivariant_norm(v), to_m_major=True)  # [N, dim]
        num_edges = edge_index.shape[1]
        if self.edge_kernel and torch.is_grad_enabled() and not torch.jit.is_tracing():
            # eager training: one autograd function for the per-edge work (_xpainn_edges.py)
            plan = EdgePlan(tuple(self.muls), tuple(self.dims), s.shape[1], v_t is not None,
                            max(1, min(KERNEL_CHUNK, edge_chunk or KERNEL_CHUNK)))
            ds, dv_t = edge_sums(phi, radial, envelope, self.radial_linear, v_t, sh, edge_index,
                                 plan)
        elif edge_chunk is None or num_edges <= edge_chunk:
            ds, dv_t = self._edges(phi, v_t, sh, radial, envelope, edge_index, s.shape[0])
        else:  # accumulate in place: the work per chunk is O(chunk), not O(N)
            ds = torch.zeros_like(s)  # [N, S]
            dv_blocks = [v.new_zeros(v.shape[0], size) for size in self.feature_sizes]  # m-major
            for start in range(0, num_edges, edge_chunk):
                sl = slice(start, start + edge_chunk)
                src, dst = edge_index[:, sl]
                msg_s, msg_v = self._messages(phi, v_t, sh[sl], radial[sl], envelope[sl], src)
                ds.index_add_(0, dst, msg_s)
                for block, msg in zip(dv_blocks, msg_v):
                    block.index_add_(0, dst, msg)
            dv_t = torch.cat(dv_blocks, dim=-1)  # [N, dim]
        return s + ds, v + self._transpose(dv_t, to_m_major=False)

    def _transpose(self, x: torch.Tensor, to_m_major: bool) -> torch.Tensor:
        """[N, dim] between e3nn's layout (per l: [mul, 2l+1]) and the m-major one ([2l+1, mul])."""
        parts = []
        for block, mul, dim in zip(torch.split(x, self.feature_sizes, dim=-1), self.muls, self.dims):
            shape = (-1, mul, dim) if to_m_major else (-1, dim, mul)
            parts.append(block.reshape(shape).transpose(1, 2).reshape(-1, mul * dim))
        return torch.cat(parts, dim=-1)

    def _edges(self, phi: torch.Tensor, v_t: torch.Tensor | None, sh: torch.Tensor,
               radial: torch.Tensor, envelope: torch.Tensor, edge_index: torch.Tensor,
               num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of the messages of these edges at each centre: [N, S] and [N, dim] (m-major)."""
        src, dst = edge_index  # neighbour j, centre i
        msg_s, msg_v = self._messages(phi, v_t, sh, radial, envelope, src)
        ds = phi.new_zeros(num_nodes, msg_s.shape[1]).index_add_(0, dst, msg_s)  # [N, S]
        dv = [phi.new_zeros(num_nodes, m.shape[1]).index_add_(0, dst, m) for m in msg_v]
        return ds, torch.cat(dv, dim=-1)  # [N, S], [N, dim] (m-major)

    def _messages(self, phi: torch.Tensor, v_t: torch.Tensor | None, sh: torch.Tensor,
                  radial: torch.Tensor, envelope: torch.Tensor, src: torch.Tensor
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The message of each edge: scalars [E, S] and per l [E, (2l+1) mul] (m-major).

        Per degree l the message is ``[E, 2l+1, mul]``: channels innermost, so the gates
        broadcast over a contiguous axis and their gradients reduce over a middle one (both
        vectorise; e3nn's ``[mul, 2l+1]`` order puts an axis of 1-5 elements innermost).
        """
        num_edges = src.shape[0]
        filt = self.radial_linear(radial) * envelope  # [E, hidden]
        # torch.split, not slicing: its backward is one cat, where each slice's backward would
        # allocate and fill a whole [E, hidden] gradient
        *gates, msg_s = torch.split(phi.index_select(0, src) * filt, self.pieces, dim=-1)
        gates_sh, gates_v = gates[-len(self.muls):], gates[:-len(self.muls)]  # [E, mul] each
        harmonics = torch.split(sh, self.dims, dim=-1)  # [E, 2l+1] each
        if gates_v:
            v_j = torch.split(v_t.index_select(0, src), self.feature_sizes, dim=-1)
        msg_v = []
        for b, (mul, dim) in enumerate(zip(self.muls, self.dims)):
            if dim == 1:  # l = 0: Y_0 = 1 ('component' normalisation)
                msg = gates_sh[b].unsqueeze(1)  # [E, 1, mul]
            else:
                msg = gates_sh[b].unsqueeze(1) * harmonics[b].unsqueeze(-1)  # [E, 2l+1, mul]
            if gates_v:
                msg = msg + gates_v[b].unsqueeze(1) * v_j[b].view(num_edges, dim, mul)
            msg_v.append(msg.reshape(num_edges, mul * dim))
        return msg_s, msg_v


class UpdateBlock(torch.nn.Module):
    """XPaiNN update of each atom from its own state.

    ``irreps_in`` = ``{"scalars": "Sx0e", "equivariant": irreps}``; checked here.
    """

    def __init__(self, irreps_in: Mapping[str, o3.Irreps | str], eps: float = 1e-6):
        super().__init__()
        owner = "UpdateBlock"
        self.irreps_in = _irreps_in(owner, irreps_in, (keys.SCALARS, keys.EQUIVARIANT))
        num_scalars = _check_scalars(owner, keys.SCALARS, self.irreps_in[keys.SCALARS])
        irreps = _check_node_irreps(owner, keys.EQUIVARIANT, self.irreps_in[keys.EQUIVARIANT])
        self.irreps_out = dict(self.irreps_in)
        k = irreps.num_irreps
        self.split, self.eps = (k, num_scalars, num_scalars), eps  # a_vv, a_sv, a_ss
        self.muls, self.dims, self.feature_sizes = _per_l(irreps)  # per degree l
        self.scalar_norm = torch.nn.LayerNorm(num_scalars)
        self.equivariant_norm = EquivariantLayerNorm(irreps)
        has_bias = irreps.count("0e") > 0
        self.linear_u = o3.Linear(irreps, irreps, biases=has_bias)
        self.linear_v = o3.Linear(irreps, irreps, biases=has_bias)
        self.update_mlp = _mlp(num_scalars + k, num_scalars, sum(self.split))
        self.dot_linear = torch.nn.Linear(k, num_scalars, bias=False)
        # where linear_u's and linear_v's blocks lie in their flat weights (_xpainn_update.py)
        self.plan_u = linear_plan(self.linear_u, irreps)
        self.plan_v = linear_plan(self.linear_v, irreps)

    def forward(self, s: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``s`` [N, S], ``v`` [N, dim] -> the updated pair (the formula in the module docstring;
        ``Linear_U`` and ``Linear_V`` as one matmul per l, see ``_xpainn_update.py``)."""
        return update(self, s, v)


class XPaiNN(torch.nn.Module):
    """The XPaiNN backbone: a graph dict in, the same dict plus ``NODE_FEATURES`` out.

    Parameters
    ----------
    num_scalars : int
        Width S of the scalar channel.
    irreps : str or o3.Irreps
        Equivariant features, sorted by l, one entry per l, parity (-1)^l.
    num_blocks : int
        Message + update blocks.
    num_basis : int
        Bessel radial functions.
    cutoff : float
        Cutoff radius (Angstrom); edges at or beyond it contribute exactly zero.
    embedding : {"qc", "onehot"}
        Element embedding, see :class:`~tsym.runtime.nn.embedding.ElementEmbedding`.
    max_z : int, optional
        Largest atomic number (default 118; elements beyond the STO-3G table, Z > 53, are
        described in :class:`~tsym.runtime.nn.embedding.ElementEmbedding`).
    cutoff_fn : {"cosine", "polynomial"}
        The smooth envelope.
    edge_chunk : int
        Edges processed at a time by each message block (the same sums, in chunks; default
        :data:`EDGE_CHUNK`).  Also an attribute that may be changed after construction; it is
        not part of the weights.

    Attributes
    ----------
    irreps_out : o3.Irreps
        ``(Sx0e + irreps).simplify()``, the layout of ``NODE_FEATURES`` [N, irreps_out.dim].

    Examples
    --------
    >>> str(XPaiNN(num_scalars=16, irreps="16x0e+8x1o+4x2e", embedding="onehot").irreps_out)
    '32x0e+8x1o+4x2e'
    """

    @staticmethod
    def stored_kwargs(kwargs: Mapping, state_dict: Mapping[str, torch.Tensor]) -> dict:
        """The keyword arguments of a saved XPaiNN, completed from its weights (``state_dict``,
        the backbone's own keys): one saved without ``max_z`` gets the one its element table
        holds (the default was 53 before it became 118, so the weights say which it was)."""
        kwargs = dict(kwargs)
        if "max_z" not in kwargs:
            for key in ("node_embedding.qc_table", "node_embedding.table.weight"):
                if key in state_dict:
                    kwargs["max_z"] = int(state_dict[key].shape[0]) - 1
        return kwargs

    def __init__(self, num_scalars: int = 128, irreps: str | o3.Irreps = "128x0e+64x1o+32x2e",
                 num_blocks: int = 3, num_basis: int = 20, cutoff: float = 5.0,
                 embedding: str = "qc", max_z: int | None = None, cutoff_fn: str = "cosine",
                 edge_chunk: int = EDGE_CHUNK):
        super().__init__()
        if num_blocks < 1:
            raise BackboneConfigError(f"XPaiNN: num_blocks must be >= 1, got {num_blocks}")
        if isinstance(edge_chunk, bool) or not isinstance(edge_chunk, int) or edge_chunk < 1:
            raise BackboneConfigError(
                f"XPaiNN: edge_chunk must be a positive integer, got {edge_chunk!r}")
        self.edge_chunk = edge_chunk
        scalars = o3.Irreps([(int(num_scalars), (0, 1))])
        _check_scalars("XPaiNN", "scalars (num_scalars)", scalars)
        self.irreps = _check_node_irreps("XPaiNN", "irreps", irreps)
        self.cutoff = float(cutoff)
        self.node_embedding = ElementEmbedding(num_scalars, embedding, max_z)
        self.max_z = self.node_embedding.max_z  # atomic numbers 1..max_z are covered
        self.edge_embedding = EdgeEmbedding(self.irreps, num_basis, cutoff, cutoff_fn)
        state = {**self.node_embedding.irreps_out, keys.EQUIVARIANT: self.irreps,
                 **self.edge_embedding.irreps_out}
        self.messages = torch.nn.ModuleList()
        self.updates = torch.nn.ModuleList()
        for b in range(num_blocks):
            self.messages.append(MessageBlock(state, first=b == 0))
            self.updates.append(UpdateBlock(self.messages[-1].irreps_out))
            state = {**state, **self.updates[-1].irreps_out}
        self.irreps_in = {keys.POSITIONS: o3.Irreps("1x1o"), keys.EDGE_VECTORS: o3.Irreps("1x1o")}
        self.irreps_out = (scalars + self.irreps).simplify()

    def compile_blocks(self, **kwargs) -> "XPaiNN":
        """Compile the blocks' tensor code with ``torch.compile``; return self.

        Compiled: each message block's edge loop (all edges at once, and one chunk) and its
        equivariant layer norm, and each update block.  On CPU the gathers, products and sums
        over neighbours fuse into a few loops, after a one-off compilation (inductor needs a C++
        compiler; the speed-up is measured in ``benchmarks/README.md``).  ``dynamic=True`` by
        default, so batches of other sizes reuse the compiled code.  Same results as eager to
        float rounding (tests/runtime/nn/test_xpainn_paths.py).  The Python loop over edge chunks
        stays eager.  ``fullgraph=True`` and ``isolate_recompiles=True`` by default too: each
        block instance keeps its own compiled entries (the blocks share their code, so they would
        otherwise share dynamo's recompile limit, and a region over it runs eager silently).
        """
        kwargs = {**COMPILE_DEFAULTS, **kwargs}

        def compiled(module, name):
            method = getattr(type(module), name).__get__(module)
            setattr(module, name, torch.compile(method, **kwargs))

        for message in self.messages:
            message.edge_kernel = False
            compiled(message, "_edges")
            compiled(message, "_messages")
            if message.equivariant_norm is not None:
                compiled(message.equivariant_norm, "forward")
        for update in self.updates:
            compiled(update, "forward")
        return self

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return a shallow copy of ``graph`` with ``NODE_FEATURES`` [N, irreps_out.dim] added."""
        edge_index = graph[keys.EDGE_INDEX]  # [2, E]
        sh, radial, envelope = self.edge_embedding(edge_vectors(graph))  # [E, *]
        s = self.node_embedding(graph[keys.ATOMIC_NUMBERS])  # [N, S]
        v = s.new_zeros(s.shape[0], self.irreps.dim)  # [N, irreps.dim]
        # the loop over chunks depends on the number of edges, which a trace would freeze: a
        # traced XPaiNN (tsym export) takes all edges at once
        chunk = None if torch.jit.is_tracing() else self.edge_chunk
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, sh, radial, envelope, edge_index, chunk)
            s, v = update(s, v)
        out = dict(graph)
        out[keys.NODE_FEATURES] = torch.cat([s, v], dim=-1)  # [N, irreps_out.dim]
        return out
