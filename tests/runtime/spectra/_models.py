"""Small models and structures shared by the spectra tests."""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

import tsym

from ...conftest import SPECS_DIR

SPECS = [SPECS_DIR / "dipole.tsym", SPECS_DIR / "polarizability.tsym"]
BACKBONE = dict(num_scalars=8, irreps="8x0e+4x1o+2x2e", num_blocks=2, embedding="onehot",
                max_z=10)
HEADS = dict(hidden_mul=2, mlp_hidden=4)
_CACHE: dict = {}


def tiny_model(dtype=torch.float64, backbone="xpainn", backbone_kwargs=None, specs=None):
    """An untrained model with a dipole and a polarizability head (built once per key)."""
    key = (dtype, backbone, repr(backbone_kwargs), repr(specs))
    if key not in _CACHE:
        _CACHE[key] = tsym.build_model(specs or SPECS, backbone=backbone, cutoff=4.0, seed=1,
                                       dtype=dtype, backbone_kwargs=backbone_kwargs or (
                                           BACKBONE if backbone == "xpainn" else None),
                                       head_kwargs=HEADS).eval()
    return _CACHE[key]


def molecules() -> list[Atoms]:
    """Water and a distorted ammonia (no symmetry that could hide a wrong index)."""
    nh3 = molecule("NH3")
    nh3.positions += np.random.default_rng(0).normal(scale=0.05, size=nh3.positions.shape)
    return [molecule("H2O"), nh3]


def orthogonal(seed: int = 0, proper: bool = False) -> np.ndarray:
    """A random rotation, times -1 (a rotation-reflection) unless ``proper``."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q = -q
    return q if proper else -q
