"""tsym.compiler.head: the standalone torch head, the one unit that ``emit`` pastes into modules.

Every module of this package imports only ``math``, ``typing``, torch, e3nn, the other modules of
this package and ``TsymError`` (which :mod:`tsym.compiler.emit` replaces by a local class); emit
pastes every module of this folder, each after those it imports, so no list can go stale.

* ``_guards``: the input checks every head runs when called (``HeadInputError``);
* ``_readout``: ``CartesianReadout`` (checks, Q, pooling: the base of every head) and
  ``scalar_indices``;
* ``_pairs``, ``_fused``: the fused, chunked sparse products of the self-mix;
* ``_selfmix``: ``SelfMixHead``, the generic node-wise self-mix head, and
  ``EquivariantLayerNorm``.
"""
from __future__ import annotations

from ._guards import HeadInputError, check_head_inputs
from ._readout import CartesianReadout, scalar_indices
from ._selfmix import EquivariantLayerNorm, SelfMixHead

__all__ = ["SelfMixHead", "CartesianReadout", "EquivariantLayerNorm", "scalar_indices",
           "HeadInputError", "check_head_inputs"]
