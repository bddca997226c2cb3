"""Backbones by name, and the contract a backbone meets (checked when a model is built).

The adapter contract
--------------------
A *backbone* is any ``torch.nn.Module`` that

1. has an attribute ``irreps_out``: an ``e3nn.o3.Irreps`` (or a string e3nn parses) with at least
   one ``0e`` (the heads' node-wise weights are computed from the ``0e`` channels) and
   ``lmax >= 1``;
2. maps a graph dict (the fields of :mod:`tsym.runtime.keys`, as built by
   :func:`tsym.runtime.graph.collate`), reading only the fields of ``keys.BACKBONE_INPUTS``
   (positions, atomic numbers, edge index, edge shifts, cell, batch: all that ``tsym export``
   passes), to a graph dict that holds
   ``keys.NODE_FEATURES`` ``[N, irreps_out.dim]`` in **e3nn 0.6 conventions**: the layout of
   ``irreps_out``, l = 1 components in (x, y, z) order, real spherical harmonics basis of
   ``e3nn.o3``, features that transform with ``irreps_out.D_from_matrix(R)`` when positions and
   cell are mapped by ``R`` (proper or improper).  A network written with another convention
   (e.g. (y, z, x) for l = 1) converts once, inside its adapter, before returning;
3. keeps (or adds) ``keys.BATCH`` ``[N]``, the structure of each node;
4. optionally has ``cutoff`` (Angstrom), the radius of the graphs it expects.

Nothing else is assumed: the heads only read ``NODE_FEATURES`` and ``BATCH``.  A network that
meets points 2 and 3 becomes a backbone with :func:`tsym.runtime.nn.wrap.backbone_from_module`,
which also checks point 2 on a probe molecule.
:func:`check_backbone` checks points 1 and 4 when a :class:`~tsym.runtime.model.TensorModel` is
built; point 2 is what the equivariance tests check end to end for tsym's own backbones, and what
:func:`build_backbone` checks on a probe molecule for every other registered or plugin backbone
(:func:`~tsym.runtime.nn.wrap.check_backbone_contract`: given only ``keys.BACKBONE_INPUTS``,
width, transformation under a rotation and a reflection).

A backbone becomes available to ``tsym.build_model(backbone=NAME)`` with
:func:`register_backbone`; ``"xpainn"`` (:class:`~tsym.runtime.nn.xpainn.XPaiNN`) and ``"nequip"``
(:class:`~tsym.runtime.nn.nequip.NequIPBackbone`) are registered here, and so are ``"mace"``
(:class:`~tsym.runtime.nn.mace.MACEBackbone`, the ``mace-torch`` package) and ``"nequip-lib"``
(:class:`~tsym.runtime.nn.nequip_lib.NequIPLibBackbone`, the ``nequip`` package), whose packages
are optional extras imported only when such a backbone is built; so is ``"sevenn"``
(:class:`~tsym.runtime.nn.sevenn.SevenNetBackbone`, pretrained SevenNet checkpoints).

Parity: a backbone whose features are SO(3)-equivariant only declares ``parity = False``;
:func:`build_backbone` then wraps it in :class:`~tsym.runtime.nn.parity.RestoreParity` (exact
O(3) features from two passes, on ``x`` and ``-x``), so point 2 holds for the wrapped network.

Plugins: an installed package that declares an entry point in the group ``tsym.backbones``
(:data:`ENTRY_POINT_GROUP`), ``NAME = "package.module:factory"``, provides backbone ``NAME`` to
every caller -- ``build_model``, each CLI verb, checkpoint reload -- without being imported first:
the group is read the first time a name is not registered (and for the list of known names).

Examples
--------
>>> sorted(BACKBONES)
['mace', 'nequip', 'nequip-lib', 'sevenn', 'xpainn']
>>> net = build_backbone("nequip", 4.0, {"irreps_hidden": "8x0e+4x1o+4x1e+2x2e+2x2o"})
>>> str(net.irreps_out)
'8x0e+4x1o+4x1e+2x2o+2x2e'
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points

import torch
from e3nn import o3

from tsym.runtime.errors import ModelConfigError, TsymError, UnknownBackboneError
from tsym.runtime.nn.mace import MACEBackbone
from tsym.runtime.nn.nequip import NequIPBackbone
from tsym.runtime.nn.nequip_lib import NequIPLibBackbone
from tsym.runtime.nn.parity import restore_parity
from tsym.runtime.nn.sevenn import SevenNetBackbone
from tsym.runtime.nn.wrap import check_backbone_contract
from tsym.runtime.nn.xpainn import XPaiNN

__all__ = ["BACKBONES", "ENTRY_POINT_GROUP", "register_backbone", "build_backbone",
           "check_backbone", "known_backbones", "backbone_name", "stored_kwargs"]

#: Backbone factories by name: ``factory(cutoff=..., **kwargs) -> nn.Module``.
BACKBONES: dict[str, Callable[..., torch.nn.Module]] = {}

#: The entry-point group through which installed packages provide backbones.
ENTRY_POINT_GROUP = "tsym.backbones"

#: tsym's own backbones (their tests check the contract end to end); every other backbone is
#: run once on a probe molecule when it is built (:func:`check_backbone_contract`).
_OWN = ("xpainn", "nequip", "mace", "nequip-lib")


def _plugins() -> dict:
    """``{name: entry point}`` of the group :data:`ENTRY_POINT_GROUP` (read, not loaded)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_backbones() -> list[str]:
    """Registered names and those installed packages provide, sorted."""
    return sorted(set(BACKBONES) | set(_plugins()))


def _load_plugin(name: str) -> bool:
    """Register backbone ``name`` from its entry point, if a package provides one."""
    ep = _plugins().get(name)
    if ep is None:
        return False
    try:
        factory = ep.load()
    except Exception as err:  # the plugin's own import failed
        raise ModelConfigError(f"backbone {name!r}: the entry point {ep.value!r} of group "
                               f"{ENTRY_POINT_GROUP!r} does not load: {type(err).__name__}: "
                               f"{err}") from err
    if not callable(factory):
        raise ModelConfigError(f"backbone {name!r}: the entry point {ep.value!r} of group "
                               f"{ENTRY_POINT_GROUP!r} is not a factory (a callable) but "
                               f"{type(factory).__name__}")
    BACKBONES.setdefault(name, factory)
    return True


def backbone_name(backbone: torch.nn.Module) -> str:
    """The backbone's ``name`` attribute when it has one (wrapped networks), else its class."""
    name = getattr(backbone, "name", None)
    return name if isinstance(name, str) and name else type(backbone).__name__


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
    if name not in BACKBONES and not _load_plugin(name):
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; known backbones: {', '.join(known_backbones())}\n"
            f"hint: register one with tsym.register_backbone(name, factory), or install a "
            f"package that declares it in the entry-point group {ENTRY_POINT_GROUP!r}")
    if "cutoff" in kwargs:
        raise ModelConfigError(f"backbone {name!r}: pass the cutoff as build_model(cutoff=...), "
                               "not inside backbone_kwargs")
    try:
        net = BACKBONES[name](cutoff=cutoff, **kwargs)
    except TsymError:  # the backbone's own message
        raise
    except (TypeError, ValueError) as err:  # an unknown keyword, or a value of the wrong kind
        raise ModelConfigError(f"backbone {name!r}: bad backbone_kwargs {sorted(kwargs)}: {err}"
                               ) from None
    net = restore_parity(net)  # parity = False: O(3) from two passes (x and -x)
    if name not in _OWN and not getattr(net, "contract_checked", False):
        check_backbone(net)
        if getattr(net, "cutoff", None) is not None:
            check_backbone_contract(net)  # a registered or plugin network: probe it once
    return net


def stored_kwargs(name: str, kwargs: Mapping, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The ``backbone_kwargs`` a checkpoint of backbone ``name`` was saved with, completed by the
    backbone's own ``stored_kwargs(kwargs, state_dict)`` when its factory has one (a default that
    changed since, read back from the weights); ``state_dict`` holds the backbone's keys only."""
    factory = BACKBONES.get(name)
    complete = getattr(factory, "stored_kwargs", None)
    return dict(kwargs) if complete is None else complete(kwargs, state_dict)


def check_backbone(backbone: torch.nn.Module) -> o3.Irreps:
    """The backbone's ``irreps_out`` as ``o3.Irreps``, after checking the contract (module doc)."""
    name = backbone_name(backbone)
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
# the optional packages (extras "mace", "nequip", "sevenn"); imported when such a backbone is built
register_backbone("mace", MACEBackbone)
register_backbone("nequip-lib", NequIPLibBackbone)
register_backbone("sevenn", SevenNetBackbone)
