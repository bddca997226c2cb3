"""O(3) features from an SO(3)-only backbone, exactly: :class:`RestoreParity`.

A backbone trained without parity (SevenNet's shipped checkpoints: ``is_parity=False``) writes
features ``f`` that rotate with ``D_l(R)`` but have no defined behaviour under the inversion
``x -> -x``; relabelling their irreps cannot fix that.  O(3) is SO(3) x {I, -I}, so run the
backbone twice, on the structure ``x`` and on its inversion image ``-x`` (positions and cell
negated: every edge vector ``r_ij = r_j - r_i + S @ cell`` becomes ``-r_ij`` with the same edge
index and the same integer shifts ``S``), and for ``s = +1, -1`` form

    g_s(x) = (f(x) + s f(-x)) / 2.

Then ``g_s(-x) = s g_s(x)``, and for a rotation ``R``,
``g_s(Rx) = D_l(R) f(x) + s D_l(R) f(-x) = D_l(R) g_s(x)`` (``f`` is SO(3)-equivariant and
``-Rx = R(-x)``).  So each degree-``l`` block of ``g_s`` transforms as the O(3) irrep
``(l, p = s)`` in e3nn's convention (``Irreps.D_from_matrix(-R) = p D_l(R)``): ``g_+`` is
``l e`` and ``g_-`` is ``l o`` for every ``l``, whatever ``f`` labelled it.  Both are kept:
``irreps_out = f.irreps_out (all e) + f.irreps_out (all o)``, twice the channels, so a polar
head (``1o``, ``2e``, ...) and an axial head (``1e``, ``2o``, ...) find what they need.
``f = g_+ + g_-``: nothing of the backbone's features is lost.

Rounding: ``g_-`` is a difference of two passes, so where it is small beside ``f`` its relative
rounding grows (float32: 2.3e-4 of an axial head's largest entry on a rattled ZnO cell against
3e-6 for a polar one); use float64 for axial heads.

Cost: two backbone passes per forward (two calls on the same edges; on a CPU no slower than
one batch of twice the atoms, and simpler).

>>> import torch
>>> from e3nn import o3
>>> from tsym.runtime.nn.wrap import backbone_from_module
>>> def chiral(graph):  # SO(3)-only: a pseudo-scalar and a vector, both labelled 'e'
...     src, dst = graph["edge_index"]
...     v = graph["positions"][src] - graph["positions"][dst]  # [E, 3]
...     s = v.sum(1, keepdim=True) ** 3  # changes sign under inversion
...     return torch.zeros(len(graph["positions"]), 4, dtype=v.dtype).index_add(
...         0, dst, torch.cat([v.norm(dim=1, keepdim=True) + s, v], 1))
>>> net = backbone_from_module(chiral, "1x0e+1x1e", cutoff=4.0, check=False)
>>> str(RestoreParity(net).irreps_out)
'1x0e+1x1e+1x0o+1x1o'
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.graph import node_batch
from tsym.runtime.errors import ModelConfigError

__all__ = ["RestoreParity", "restore_parity", "has_parity"]


def has_parity(backbone: torch.nn.Module) -> bool:
    """False when the backbone declares ``parity = False`` (SO(3)-equivariant features only)."""
    return getattr(backbone, "parity", True) is not False


def _relabel(irreps: o3.Irreps, p: int) -> o3.Irreps:
    """``irreps`` with every block's parity set to ``p``, order and multiplicities kept."""
    return o3.Irreps([(mul, (ir.l, p)) for mul, ir in irreps])


class RestoreParity(torch.nn.Module):
    """An SO(3) backbone made O(3): even and odd parts of its features (module doc).

    Parameters
    ----------
    backbone : torch.nn.Module
        Meets the backbone contract except under improper maps (``parity = False``).

    Attributes
    ----------
    irreps_out : e3nn.o3.Irreps
        ``backbone.irreps_out`` relabelled ``e``, then relabelled ``o``: ``[N, 2 * dim]``.
    """

    parity = True

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        if isinstance(backbone, RestoreParity):
            raise ModelConfigError("backbone is wrapped in RestoreParity already")
        irreps = o3.Irreps(backbone.irreps_out)
        self.backbone = backbone
        self.irreps_so3 = irreps
        self.irreps_out = _relabel(irreps, 1) + _relabel(irreps, -1)
        self.cutoff = getattr(backbone, "cutoff", None)
        self.name = getattr(backbone, "name", None) or type(backbone).__name__
        for attr in ("elements", "max_z", "checkpoint_name", "checkpoint_sha256"):
            if hasattr(backbone, attr):
                setattr(self, attr, getattr(backbone, attr))

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        positions = graph[keys.POSITIONS]  # [N, 3]
        batch = node_batch(graph)  # [N]
        # -x: only the contract's inputs (a stored EDGE_VECTORS would not flip), same edges
        inverted = {k: graph[k] for k in keys.BACKBONE_INPUTS if k in graph}
        inverted[keys.POSITIONS] = -positions  # [N, 3]
        inverted[keys.BATCH] = batch
        if keys.CELL in graph:
            inverted[keys.CELL] = -graph[keys.CELL]  # [G, 3, 3]: -x's lattice is -cell
        f = self.backbone(dict(graph))[keys.NODE_FEATURES]  # [N, dim]: f(x)
        f_inv = self.backbone(inverted)[keys.NODE_FEATURES]  # [N, dim]: f(-x)
        out = dict(graph)
        out[keys.NODE_FEATURES] = torch.cat([f + f_inv, f - f_inv], 1) / 2  # [N, 2 dim]
        out[keys.BATCH] = batch
        return out


    def for_export(self) -> RestoreParity:
        """What ``tsym export`` traces: this wrapper around the backbone's ``for_export()``."""
        prepare = getattr(self.backbone, "for_export", None)
        return RestoreParity(prepare()) if prepare else self

def restore_parity(backbone: torch.nn.Module) -> torch.nn.Module:
    """``backbone`` as it is when it has parity, else :class:`RestoreParity` of it."""
    return backbone if has_parity(backbone) else RestoreParity(backbone)
