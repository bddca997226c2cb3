"""Backbones by name, and the contract a backbone meets (checked when a model is built).

The adapter contract
--------------------
A *backbone* is any ``torch.nn.Module`` that

1. has an attribute ``irreps_out``: an ``e3nn.o3.Irreps`` (or a string e3nn parses) with at least
   one ``0e`` (the heads' node-wise weights are computed from the ``0e`` channels) and
   ``lmax >= 1``;
2. maps a graph dict (the fields of :mod:`tsym.runtime.keys`, as built by
   :func:`tsym.runtime.graph.collate`) to a graph dict that holds
   ``keys.NODE_FEATURES`` ``[N, irreps_out.dim]`` in **e3nn 0.6 conventions**: the layout of
   ``irreps_out``, l = 1 components in (x, y, z) order, real spherical harmonics basis of
   ``e3nn.o3``, features that transform with ``irreps_out.D_from_matrix(R)`` when positions and
   cell are mapped by ``R`` (proper or improper).  A network written with another convention
   (e.g. (y, z, x) for l = 1) converts once, inside its adapter, before returning;
3. keeps (or adds) ``keys.BATCH`` ``[N]``, the structure of each node;
4. optionally has ``cutoff`` (Angstrom), the radius of the graphs it expects.

Nothing else is assumed: the heads only read ``NODE_FEATURES`` and ``BATCH``.
:func:`check_backbone` checks points 1 and 4 when a :class:`~tsym.runtime.model.TensorModel` is
built; point 2 is what the equivariance tests check end to end.

A backbone becomes available to ``tsym.build_model(backbone=NAME)`` with
:func:`register_backbone`; ``"xpainn"`` (:class:`~tsym.runtime.nn.xpainn.XPaiNN`) and ``"nequip"``
(:class:`~tsym.runtime.nn.nequip.NequIPBackbone`) are registered here, and so are ``"mace"``
(:class:`~tsym.runtime.nn.mace.MACEBackbone`, the ``mace-torch`` package) and ``"nequip-lib"``
(:class:`~tsym.runtime.nn.nequip_lib.NequIPLibBackbone`, the ``nequip`` package), whose packages
are optional extras imported only when such a backbone is built.

Examples
--------
>>> sorted(BACKBONES)
['mace', 'nequip', 'nequip-lib', 'xpainn']
>>> net = build_backbone("nequip", 4.0, {"irreps_hidden": "8x0e+4x1o+4x1e+2x2e+2x2o"})
>>> str(net.irreps_out)
'8x0e+4x1o+4x1e+2x2o+2x2e'
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from e3nn import o3

from tsym.runtime.errors import ModelConfigError, TsymError, UnknownBackboneError
from tsym.runtime.nn.mace import MACEBackbone
from tsym.runtime.nn.nequip import NequIPBackbone
from tsym.runtime.nn.nequip_lib import NequIPLibBackbone
from tsym.runtime.nn.xpainn import XPaiNN

__all__ = ["BACKBONES", "register_backbone", "build_backbone", "check_backbone"]

#: Backbone factories by name: ``factory(cutoff=..., **kwargs) -> nn.Module``.
BACKBONES: dict[str, Callable[..., torch.nn.Module]] = {}


def register_backbone(name: str, factory: Callable[..., torch.nn.Module]) -> None:
    """Make ``factory(cutoff=..., **kwargs)`` available as ``build_model(backbone=name)``."""
    if not isinstance(name, str) or not name:
        raise ModelConfigError(f"a backbone name must be a non-empty string, got {name!r}")
    BACKBONES[name] = factory


def build_backbone(name: str, cutoff: float, kwargs: Mapping | None = None) -> torch.nn.Module:
    """Build the backbone registered as ``name`` with ``cutoff=cutoff, **kwargs``.

    Errors name the backbone (and, for an unknown name, the registered ones).
    """
    kwargs = dict(kwargs or {})
    if name not in BACKBONES:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}\n"
            "hint: register a new one with tsym.runtime.nn.registry.register_backbone")
    if "cutoff" in kwargs:
        raise ModelConfigError(f"backbone {name!r}: pass the cutoff as build_model(cutoff=...), "
                               "not inside backbone_kwargs")
    try:
        return BACKBONES[name](cutoff=cutoff, **kwargs)
    except TsymError:  # the backbone's own message
        raise
    except (TypeError, ValueError) as err:  # an unknown keyword, or a value of the wrong kind
        raise ModelConfigError(f"backbone {name!r}: bad backbone_kwargs {sorted(kwargs)}: {err}"
                               ) from None


def check_backbone(backbone: torch.nn.Module) -> o3.Irreps:
    """The backbone's ``irreps_out`` as ``o3.Irreps``, after checking the contract (module doc)."""
    name = type(backbone).__name__
    if not isinstance(backbone, torch.nn.Module):
        raise ModelConfigError(f"backbone {name} is not a torch.nn.Module")
    if not hasattr(backbone, "irreps_out"):
        raise ModelConfigError(
            f"backbone {name} declares no irreps_out; a backbone must set irreps_out (an "
            "e3nn.o3.Irreps) to the layout of the node features it writes")
    try:
        irreps = o3.Irreps(backbone.irreps_out)
    except (ValueError, TypeError, AssertionError):
        raise ModelConfigError(f"backbone {name}: irreps_out {backbone.irreps_out!r} is not an "
                               "e3nn Irreps") from None
    if irreps.count("0e") == 0 or irreps.lmax < 1:
        raise ModelConfigError(
            f"backbone {name}: irreps_out '{irreps}' needs at least one 0e and lmax >= 1 for the "
            "tensor heads")
    return irreps


register_backbone("xpainn", XPaiNN)
register_backbone("nequip", NequIPBackbone)
# the optional packages (extras "mace", "nequip"); imported when such a backbone is built
register_backbone("mace", MACEBackbone)
register_backbone("nequip-lib", NequIPLibBackbone)
