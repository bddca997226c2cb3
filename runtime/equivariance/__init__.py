"""tsym.runtime.equivariance: the one home of equivariance checks (tests and the backbone contract).

* :func:`check_equivariance`: rotate, reflect, translate and permute the inputs of a model (or a
  backbone with heads, or any function of structures) and report the error per output;
* :func:`equivariance_errors`: the numbers behind it, per output and transformation;
* :func:`assert_equivariant`: the same comparison as a test assertion (with an optional
  higher-precision twin for the rounding allowance);
* :func:`random_rotation`, :func:`rotate_atoms`, :func:`rotate_cartesian`: the rotations of
  structures and Cartesian tensors they are built on; :func:`default_dtype`, torch's default
  dtype inside a block (e3nn builds its constants in it).
"""
from __future__ import annotations

from ._check import assert_equivariant, default_dtype, equivariance_errors
from ._report import EquivarianceReport, HeadEquivariance, check_equivariance
from ._rotations import random_rotation, rotate_atoms, rotate_cartesian

__all__ = ["check_equivariance", "EquivarianceReport", "HeadEquivariance", "equivariance_errors",
           "assert_equivariant", "random_rotation", "rotate_atoms", "rotate_cartesian",
           "default_dtype"]
