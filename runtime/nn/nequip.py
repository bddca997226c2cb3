"""A second backbone, NequIP-style: the example of the backbone contract of
:mod:`tsym.runtime.nn.registry` written with e3nn's own modules.

Each :class:`Interaction` convolves the neighbours' features with the edge spherical harmonics
(radial weights from a Bessel basis and a cutoff envelope), adds a self-connection, and gates;
:class:`NequIPBackbone` stacks them and writes ``NODE_FEATURES``.  It is registered as
``"nequip"``.

Examples
--------
>>> net = NequIPBackbone(cutoff=4.0, irreps_hidden="8x0e+4x1o+4x1e+2x2e+2x2o")
>>> str(net.irreps_out)
'8x0e+4x1o+4x1e+2x2o+2x2e'
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.nn.embedding import BesselBasis, CutoffEnvelope
from tsym.runtime.graph import edge_vectors

__all__ = ["NequIPBackbone", "Interaction"]


def _gate(irreps_target: o3.Irreps, reachable: set[o3.Irrep]) -> e3nn_nn.Gate:
    """Gate onto the irreps of ``irreps_target`` that the interaction can reach.

    Scalars: SiLU for ``0e``, tanh for ``0o``; one sigmoid ``0e`` gate per non-scalar channel.
    """
    keep = o3.Irreps([(mul, ir) for mul, ir in irreps_target if ir in reachable])
    scalars = o3.Irreps([(mul, ir) for mul, ir in keep if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in keep if ir.l > 0])
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return e3nn_nn.Gate(scalars, acts, gates, [torch.sigmoid] if gated.num_irreps else [], gated)


class Interaction(torch.nn.Module):
    """One NequIP-style interaction: convolution with edge harmonics, self-connection, gate.

    ``x_i' = Gate(Linear_2(sum_j TP(Linear_1(x)_j, Y(r_ij); w(r_ij)) / sqrt(n)) + SC(x_i, a_i))``
    with ``TP`` an ``o3.TensorProduct`` of the neighbour's features and the edge spherical
    harmonics (``"uvu"`` paths, per-edge weights ``w`` from a radial MLP of the Bessel basis times
    the cutoff envelope), ``SC`` an ``o3.FullyConnectedTensorProduct`` of the node's features and
    its species attributes ``a_i``, and a residual ``x_i`` added when the irreps agree.

    Parameters
    ----------
    irreps_in, irreps_sh, irreps_attr : o3.Irreps
        Node features, edge harmonics, node (species) attributes.
    irreps_target : o3.Irreps
        Wanted output irreps; those the convolution cannot reach are dropped
        (``irreps_out`` holds what is kept).
    num_basis, radial_hidden : int
        Radial MLP (``e3nn.nn.FullyConnectedNet``): ``num_basis -> radial_hidden ->
        tp.weight_numel``.
    avg_num_neighbors : float
        ``n``: the sum over neighbours is divided by its square root.
    """

    def __init__(self, irreps_in, irreps_sh, irreps_attr, irreps_target, num_basis: int,
                 radial_hidden: int, avg_num_neighbors: float):
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        irreps_attr, irreps_target = o3.Irreps(irreps_attr), o3.Irreps(irreps_target)
        wanted = {ir for _, ir in irreps_target}
        mid, paths = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in wanted:
                        paths.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        irreps_mid, perm, _ = o3.Irreps(mid).sort()
        paths = [(i, j, perm[k], mode, w) for i, j, k, mode, w in paths]
        self.gate = _gate(irreps_target, {ir for _, ir in irreps_mid})
        self.irreps_in, self.irreps_out = irreps_in, self.gate.irreps_out
        self.linear_1 = o3.Linear(irreps_in, irreps_in)
        self.tp = o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, paths,
                                   shared_weights=False, internal_weights=False)
        # e3nn's normalised MLP (as in NequIP): path weights of unit variance at initialisation
        self.radial = e3nn_nn.FullyConnectedNet(
            [num_basis, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu)
        self.linear_2 = o3.Linear(irreps_mid.simplify(), self.gate.irreps_in)
        self.self_connection = o3.FullyConnectedTensorProduct(irreps_in, irreps_attr,
                                                              self.gate.irreps_in)
        self.residual = irreps_in == self.irreps_out
        self.norm = 1.0 / math.sqrt(avg_num_neighbors)

    def forward(self, x: torch.Tensor, attrs: torch.Tensor, sh: torch.Tensor,
                radial: torch.Tensor, envelope: torch.Tensor, edge_index: torch.Tensor
                ) -> torch.Tensor:
        src, dst = edge_index  # neighbour j, centre i
        w = self.radial(radial) * envelope  # [E, tp.weight_numel]
        msg = self.tp(self.linear_1(x)[src], sh, w)  # [E, mid.dim]
        agg = msg.new_zeros(x.shape[0], msg.shape[1]).index_add_(0, dst, msg)  # [N, mid.dim]
        y = self.linear_2(agg * self.norm) + self.self_connection(x, attrs)  # [N, gate_in.dim]
        y = self.gate(y)  # [N, irreps_out.dim]
        return y + x if self.residual else y


class NequIPBackbone(torch.nn.Module):
    """A small NequIP-style interaction network built from e3nn (a second backbone example).

    Parameters
    ----------
    irreps_hidden : str or o3.Irreps
        Target irreps of every interaction (both parities allowed, e.g. ``"32x0e+16x1o+16x1e"``);
        the ``0e`` part is also the width of the species embedding.
    lmax_sh : int
        Degree of the edge spherical harmonics (``component`` normalisation, x, y, z order).
    num_layers : int
        Interactions (2 by default).
    num_basis, radial_hidden : int
        Bessel functions and hidden width of the radial MLP.
    cutoff : float
        Angstrom; edges at or beyond it contribute exactly zero (polynomial envelope).
    num_attrs : int
        Width of the learned species attributes fed to the self-connections.
    max_z : int
        Largest atomic number.
    avg_num_neighbors : float
        Normalisation of the neighbour sum.

    Attributes
    ----------
    irreps_out : o3.Irreps
        The irreps of the last interaction (the reachable part of ``irreps_hidden``, sorted).
    """

    def __init__(self, irreps_hidden: str | o3.Irreps = "32x0e+16x1o+16x1e+8x2e+8x2o",
                 lmax_sh: int = 2, num_layers: int = 2, num_basis: int = 8,
                 radial_hidden: int = 32, cutoff: float = 5.0, num_attrs: int = 8,
                 max_z: int = 100, avg_num_neighbors: float = 12.0):
        super().__init__()
        irreps_hidden = o3.Irreps(irreps_hidden).sort().irreps.simplify()
        num_scalars = irreps_hidden.count("0e")
        if num_scalars == 0 or num_layers < 1:
            raise ModelConfigError(f"NequIPBackbone: irreps_hidden '{irreps_hidden}' needs 0e "
                                   f"channels and num_layers >= 1 (got {num_layers})")
        self.cutoff, self.max_z = float(cutoff), int(max_z)
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax_sh)
        irreps_attr = o3.Irreps(f"{num_attrs}x0e")
        self.species = torch.nn.Embedding(self.max_z + 1, num_attrs)  # [Z] -> attributes
        self.embed = torch.nn.Linear(num_attrs, num_scalars)  # attributes -> 0e features
        self.radial_basis = BesselBasis(num_basis, cutoff)
        self.envelope = CutoffEnvelope(cutoff, "polynomial")
        self.layers = torch.nn.ModuleList()
        irreps = o3.Irreps(f"{num_scalars}x0e")
        for _ in range(num_layers):
            layer = Interaction(irreps, self.irreps_sh, irreps_attr, irreps_hidden, num_basis,
                                radial_hidden, avg_num_neighbors)
            self.layers.append(layer)
            irreps = layer.irreps_out
        self.irreps_out = irreps

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return a shallow copy of ``graph`` with ``NODE_FEATURES`` [N, irreps_out.dim] added."""
        vectors = edge_vectors(graph)  # [E, 3]
        r = torch.linalg.vector_norm(vectors, dim=-1)  # [E]
        sh = o3.spherical_harmonics(self.irreps_sh, vectors, normalize=True,
                                    normalization="component")  # [E, sh.dim]
        radial, envelope = self.radial_basis(r), self.envelope(r)  # [E, B], [E, 1]
        attrs = self.species(graph[keys.ATOMIC_NUMBERS])  # [N, num_attrs]
        x = self.embed(attrs)  # [N, n_0e]
        for layer in self.layers:
            x = layer(x, attrs, sh, radial, envelope, graph[keys.EDGE_INDEX])  # [N, dim]
        out = dict(graph)
        out[keys.NODE_FEATURES] = x  # [N, irreps_out.dim]
        return out

