"""XPaiNN written the straightforward way with e3nn modules: the baseline of ``backbone_vs_e3nn.py``.

The same architecture and the same weights as :class:`tsym.runtime.nn.xpainn.XPaiNN` (the dense
layers, layer norms and ``o3.Linear`` maps are *shared* with the tsym model it is built from), so
both compute the same function; ``backbone_vs_e3nn.py`` checks that before timing.  What differs
is how the equivariant products are written, as one would write them from the e3nn documentation:

* gate x spherical harmonics on each edge: ``o3.TensorProduct(gates, Y, irreps, "uvu")``;
* gate x neighbour features on each edge: ``o3.ElementwiseTensorProduct``-style ``"uuu"`` product;
* gathers with advanced indexing ``x[src]``, sums over neighbours with ``index_add``;
* update: ``o3.Norm`` for ``|V|``, ``o3.ElementwiseTensorProduct(U, V, ["0e"])`` for ``<U, V>``,
  a ``"uuu"`` product for ``a_vv * U``.

Each product is a separate module over the whole ``[E, dim]`` edge set, with no chunking.
"""
from __future__ import annotations

import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.nn.xpainn import XPaiNN
from tsym.runtime.nn.embedding import sh_irreps_for
from tsym.runtime.graph import edge_vectors


def _gate_irreps(irreps: o3.Irreps) -> o3.Irreps:
    return o3.Irreps([(mul, (0, 1)) for mul, _ in irreps])  # one scalar per channel, grouped by l


def _gate_product(irreps_gates: o3.Irreps, irreps_in: o3.Irreps, irreps_out: o3.Irreps,
                  mode: str) -> o3.TensorProduct:
    return o3.TensorProduct(irreps_gates, irreps_in, irreps_out,
                            [(i, i, i, mode, False) for i in range(len(irreps_out))])


class NaiveMessage(torch.nn.Module):
    def __init__(self, ref):
        super().__init__()
        self.ref = ref  # shares scalar_norm, scalar_mlp, radial_linear, equivariant_norm
        irreps = ref.irreps_out["equivariant"]
        gates = _gate_irreps(irreps)
        self.split = (gates.dim if ref.equivariant_norm is not None else 0, gates.dim,
                      ref.irreps_out["scalars"].dim)
        self.tp_sh = _gate_product(gates, sh_irreps_for(irreps), irreps, "uvu")
        self.tp_v = _gate_product(gates, irreps, irreps, "uuu")

    def forward(self, s, v, sh, radial, envelope, edge_index):
        src, dst = edge_index
        phi = self.ref.scalar_mlp(self.ref.scalar_norm(s))  # [N, hidden]
        filt = self.ref.radial_linear(radial) * envelope  # [E, hidden]
        gate_v, gate_sh, msg_s = torch.split(phi[src] * filt, self.split, dim=-1)
        msg_v = self.tp_sh(gate_sh, sh)  # [E, dim]
        if self.ref.equivariant_norm is not None:
            msg_v = msg_v + self.tp_v(gate_v, self.ref.equivariant_norm(v)[src])
        return s.index_add(0, dst, msg_s), v.index_add(0, dst, msg_v)


class NaiveUpdate(torch.nn.Module):
    def __init__(self, ref):
        super().__init__()
        self.ref = ref  # shares the norms, linear_u/v, update_mlp, dot_linear
        irreps = ref.irreps_out["equivariant"]
        self.norm = o3.Norm(irreps, squared=True)
        self.dot = o3.ElementwiseTensorProduct(irreps, irreps, ["0e"])
        self.scale = _gate_product(_gate_irreps(irreps), irreps, irreps, "uuu")

    def forward(self, s, v):
        r, eps = self.ref, self.ref.eps
        v_n = r.equivariant_norm(v)
        u, w = r.linear_u(v_n), r.linear_v(v_n)
        norms = torch.sqrt(self.norm(w) + eps**2) - eps  # [N, K]
        a_vv, a_sv, a_ss = torch.split(
            r.update_mlp(torch.cat([r.scalar_norm(s), norms], dim=-1)), r.split, dim=-1)
        s = s + a_sv * r.dot_linear(self.dot(u, w)) + a_ss
        return s, v + self.scale(a_vv, u)


class NaiveXPaiNN(torch.nn.Module):
    """The e3nn-module version of ``ref`` (an :class:`XPaiNN`), sharing its weights."""

    def __init__(self, ref: XPaiNN):
        super().__init__()
        self.ref = ref
        self.messages = torch.nn.ModuleList(NaiveMessage(m) for m in ref.messages)
        self.updates = torch.nn.ModuleList(NaiveUpdate(u) for u in ref.updates)

    def forward(self, graph):
        edge_index = graph[keys.EDGE_INDEX]
        sh, radial, envelope = self.ref.edge_embedding(edge_vectors(graph))
        s = self.ref.node_embedding(graph[keys.ATOMIC_NUMBERS])
        v = s.new_zeros(s.shape[0], self.ref.irreps.dim)
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, sh, radial, envelope, edge_index)
            s, v = update(s, v)
        out = dict(graph)
        out[keys.NODE_FEATURES] = torch.cat([s, v], dim=-1)
        return out
