"""A user's own network as a backbone: ``backbone_from_module(net, irreps_out, cutoff=...)``.

``net`` is a ``torch.nn.Module`` or a plain function that maps a graph dict -- exactly the
fields of :data:`tsym.runtime.keys.BACKBONE_INPUTS` (positions, atomic numbers, edge index, edge
shifts, cell, batch), the same in training, prediction and export -- to node features
``[N, irreps_out.dim]`` (or to a dict holding them under ``keys.NODE_FEATURES``) laid out as
``irreps_out`` in e3nn's conventions.  The result meets the backbone contract of
:mod:`tsym.runtime.nn.registry` and goes to ``tsym.build_model(specs, backbone=...)`` as it is,
or into :func:`~tsym.runtime.nn.registry.register_backbone` (and so into an entry point of the
``tsym.backbones`` group) inside a factory.

When it is made, the backbone runs once on a small probe molecule, rotated and reflected: an
error (:class:`~tsym.runtime.errors.ModelConfigError`) names the backbone and the irreps when the
network reads a field it is not given, writes features of another width than ``irreps_out``, or
writes features that do not transform as ``irreps_out`` (blocks declared in another order than
the network writes them, e.g. MACE's ``16x0e+16x1o+16x2e+16x0e`` given sorted).

Examples
--------
>>> import torch
>>> from e3nn import o3
>>> def pair_features(graph):  # 1x0e+1x1o per atom: sums of distances and of bond vectors
...     src, dst = graph["edge_index"]
...     vec = graph["positions"][src] - graph["positions"][dst]  # [E, 3] (molecules)
...     f = torch.cat([vec.norm(dim=1, keepdim=True), vec], dim=1)  # [E, 4]
...     return torch.zeros(len(graph["positions"]), 4, dtype=f.dtype).index_add(0, dst, f)
>>> net = backbone_from_module(pair_features, "1x0e+1x1o", cutoff=4.0)
>>> net.name, str(net.irreps_out), net.cutoff
('pair_features', '1x0e+1x1o', 4.0)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from ase import Atoms
from ase.data import atomic_numbers
from e3nn import o3

from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.graph import collate
from tsym.runtime.equivariance import random_rotation, rotate_atoms
from tsym.runtime.equivariance import default_dtype

__all__ = ["ModuleBackbone", "backbone_from_module", "check_backbone_contract", "probe_molecule"]


def probe_molecule(elements=None) -> Atoms:
    """Five atoms with no symmetry at all, so that every irrep block can be non-zero: C, H, N,
    O, H, or the given ``elements`` (atomic numbers or symbols) in turn, for a backbone that
    keeps weights per element."""
    numbers = [6, 1, 7, 8, 1]
    if elements:
        zs = [atomic_numbers[e] if isinstance(e, str) else int(e) for e in elements]
        numbers = [zs[k % len(zs)] for k in range(5)]
    return Atoms(numbers=numbers,
                 positions=[[0.0, 0.0, 0.0], [1.05, 0.12, -0.2], [-0.4, 1.3, 0.25],
                            [0.2, -0.5, 1.25], [-1.1, -0.6, -0.45]])


class ModuleBackbone(torch.nn.Module):
    """``net`` (module or function: graph -> node features) with ``irreps_out`` and ``cutoff``.

    ``forward(graph)`` passes ``net`` only the fields of ``keys.BACKBONE_INPUTS`` and returns
    the graph plus ``keys.NODE_FEATURES`` ``[N, irreps_out.dim]``.
    """

    def __init__(self, net: Callable, irreps_out, cutoff: float, name: str):
        super().__init__()
        self.net = net  # a submodule when it is a module (its parameters train with the heads)
        self.irreps_out = o3.Irreps(irreps_out)
        self.cutoff = float(cutoff)
        self.name = name

    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.net({k: graph[k] for k in keys.BACKBONE_INPUTS})
        features = out[keys.NODE_FEATURES] if isinstance(out, Mapping) else out  # [N, dim]
        return {**graph, keys.NODE_FEATURES: features}


def _irreps(name: str, irreps_out) -> o3.Irreps:
    try:
        return o3.Irreps(irreps_out)
    except (ValueError, TypeError, AssertionError):
        raise ModelConfigError(f"backbone {name!r}: irreps_out {irreps_out!r} is not an e3nn "
                               "Irreps (write e.g. '16x0e+16x1o+16x2e')") from None


def _name(backbone: torch.nn.Module) -> str:
    name = getattr(backbone, "name", None)
    return name if isinstance(name, str) and name else type(backbone).__name__


def _features(backbone: torch.nn.Module, atoms: Atoms, dtype: torch.dtype,
              cutoff: float) -> torch.Tensor:
    """The node features of ``atoms`` ``[N, dim]``, or an error naming what went wrong."""
    name, irreps = _name(backbone), o3.Irreps(backbone.irreps_out)
    graph = collate([atoms], cutoff, dtype)
    try:
        with torch.no_grad():
            out = backbone({k: graph[k] for k in keys.BACKBONE_INPUTS})
            features = out[keys.NODE_FEATURES]
    except KeyError as err:
        raise ModelConfigError(
            f"backbone {name!r} reads the graph field {err}, which a backbone is not given; it "
            f"receives only {', '.join(keys.BACKBONE_INPUTS)} (README, "
            "'The backbone contract')") from None
    except Exception as err:  # the user's network failed on a plain molecule
        raise ModelConfigError(f"backbone {name!r} failed on a 5-atom probe molecule (elements "
                               f"{sorted(set(atoms.get_chemical_symbols()))}): "
                               f"{type(err).__name__}: {err}") from err
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or (
            features.shape[0] != len(atoms)):
        shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise ModelConfigError(f"backbone {name!r} must write node features [n_atoms, "
                               f"{irreps.dim}] for irreps_out '{irreps}', got {shape} for "
                               f"{len(atoms)} atoms")
    if features.shape[1] != irreps.dim:
        raise ModelConfigError(
            f"backbone {name!r} writes node features of width {features.shape[1]}, but its "
            f"irreps_out '{irreps}' has dim {irreps.dim}: give the irreps of the features it "
            "writes, block by block in their order")
    return features


def check_backbone_contract(backbone: torch.nn.Module, atoms: Atoms | None = None,
                            parity: bool = True, seed: int = 0,
                            dtype: torch.dtype | None = None,
                            cutoff: float | None = None) -> float:
    """Run ``backbone`` (any module with ``irreps_out`` and ``cutoff``) on a probe given only the
    fields of ``keys.BACKBONE_INPUTS``, rotated and reflected; the largest relative error of
    ``F(g x) = F(x) D(g)^T``.  Raises :class:`ModelConfigError` above ``sqrt(eps)`` of the dtype
    (a wrong layout is an error of order one; rounding is ~eps times a modest amplification).
    ``dtype``: of the probe graph; default that of the backbone's parameters (or torch's
    default dtype for a function).  ``cutoff``: of the probe graph, default ``backbone.cutoff``."""
    atoms = probe_molecule(getattr(backbone, "elements", None)) if atoms is None else atoms
    params = list(backbone.parameters())
    if dtype is None:
        dtype = params[0].dtype if params else torch.get_default_dtype()
    cutoff = float(backbone.cutoff if cutoff is None else cutoff)
    base = _features(backbone, atoms, dtype, cutoff)  # [N, dim]
    scale = float(base.abs().max())
    rotation = random_rotation(torch.float64, torch.Generator().manual_seed(seed))
    worst, where = 0.0, ""
    for what, r in [("a rotation", rotation)] + ([("a reflection", -rotation)] if parity else []):
        moved = _features(backbone, rotate_atoms(atoms, r), dtype, cutoff).double()
        with default_dtype(torch.float64):  # e3nn builds its generators in the default dtype
            d = o3.Irreps(backbone.irreps_out).D_from_matrix(r)  # [dim, dim], parity for det -1
        error = float((moved - base.double() @ d.T).abs().max()) / max(scale, 1e-300)
        if error > worst:
            worst, where = error, what
    if scale > 0 and worst > math.sqrt(torch.finfo(dtype).eps):
        raise ModelConfigError(
            f"backbone {_name(backbone)!r}: its node features do not transform as its irreps_out "
            f"'{backbone.irreps_out}' (relative error {worst:.2g} under {where}): the irreps "
            "must list the blocks in the order the network writes them (not sorted, not "
            "simplified), with the parity each block has")
    return worst


def backbone_from_module(net: Callable, irreps_out, *, cutoff: float, name: str | None = None,
                         check: bool = True, probe: Atoms | None = None) -> ModuleBackbone:
    """``net`` (a module, or a function graph -> node features) as a tsym backbone.

    Parameters
    ----------
    net
        ``net(graph)`` with ``graph`` the fields of ``keys.BACKBONE_INPUTS`` returns node
        features ``[N, irreps_out.dim]`` (or a dict with them under ``"node_features"``).
    irreps_out
        The e3nn irreps of those features, block by block in the order ``net`` writes them.
    cutoff
        Graph radius in Angstrom.
    name
        For messages; default the class or function name of ``net``.
    check
        Run ``net`` on a probe molecule (``probe``, default :func:`probe_molecule`), rotated and
        reflected, and check width and transformation of its features (see the module doc).
    """
    name = name or getattr(net, "__name__", None) or type(net).__name__
    irreps = _irreps(name, irreps_out)
    if not callable(net):
        raise ModelConfigError(f"backbone {name!r}: expected a torch module or a function of the "
                               f"graph, got {type(net).__name__}")
    if not float(cutoff) > 0:
        raise ModelConfigError(f"backbone {name!r}: cutoff must be > 0 Angstrom, got {cutoff!r}")
    if irreps.count("0e") == 0 or irreps.lmax < 1:
        raise ModelConfigError(f"backbone {name!r}: irreps_out '{irreps}' needs at least one 0e "
                               "and lmax >= 1 for the tensor heads")
    backbone = ModuleBackbone(net, irreps, cutoff, name)
    if check:
        check_backbone_contract(backbone, probe)
    backbone.contract_checked = True  # or the caller chose not to: build_backbone leaves it
    return backbone
