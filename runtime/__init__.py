"""tsym.runtime: structures -> graphs -> XPaiNN (or any e3nn backbone) -> compiled heads.

Public API::

    build_model(specs, backbone="xpainn", ...)  -> TensorModel
    TensorModel(backbone, plans)                 a backbone plus one compiled head per spec

Other backbones plug in through :mod:`tsym.runtime.nn.registry` (the contract, ``register_backbone``).
"""
from __future__ import annotations

from .model import TensorModel, build_model

__all__ = ["build_model", "TensorModel"]
