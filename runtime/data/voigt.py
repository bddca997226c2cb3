"""Voigt notation, IEEE order ``xx, yy, zz, yz, xz, xy`` (indices 0..5), without factors.

* stiffness ``C_IJ = C_ijkl`` with ``I = (ij)``, ``J = (kl)``;
* piezoelectric stress tensor ``e_iJ = e_ijk`` with ``J = (jk)``.

Compliance ``S`` and the piezoelectric strain tensor ``d`` carry factors 2 and 4 on shear entries
in Voigt form: these maps never apply them.

>>> c = np.zeros((6, 6)); c[3, 3] = 40.0        # C_44 = C_yzyz
>>> t = voigt_to_tensor4(c)
>>> t[1, 2, 1, 2], t[2, 1, 1, 2], t[2, 1, 2, 1], t[0, 0, 0, 0]
(np.float64(40.0), np.float64(40.0), np.float64(40.0), np.float64(0.0))
>>> bool(np.all(tensor4_to_voigt(t) == c))
True
"""
from __future__ import annotations

import numpy as np

__all__ = ["VOIGT_PAIRS", "voigt_to_tensor4", "tensor4_to_voigt", "voigt_to_tensor3",
           "tensor3_to_voigt"]

#: Voigt index I -> Cartesian pair (i, j), IEEE order xx, yy, zz, yz, xz, xy.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_VOIGT = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])  # (i, j) -> I
_PI = np.array([p[0] for p in VOIGT_PAIRS])
_PJ = np.array([p[1] for p in VOIGT_PAIRS])


def voigt_to_tensor4(c: np.ndarray) -> np.ndarray:
    """Stiffness ``[..., 6, 6]`` (IEEE order, no factors) -> ``[..., 3, 3, 3, 3]``:
    ``C_ijkl = C_IJ``."""
    c = np.asarray(c, dtype=np.float64)
    return c[..., _VOIGT[:, :, None, None], _VOIGT[None, None, :, :]]  # [..., 3, 3, 3, 3]


def tensor4_to_voigt(t: np.ndarray) -> np.ndarray:
    """``[..., 3, 3, 3, 3] -> [..., 6, 6]``; ``C_IJ`` is the mean of ``C_ijkl`` over ``ij <-> ji``,
    ``kl <-> lk`` (exact inverse of :func:`voigt_to_tensor4` on minor-symmetric tensors)."""
    t = np.asarray(t, dtype=np.float64)
    t = 0.5 * (t + np.swapaxes(t, -4, -3))
    t = 0.5 * (t + np.swapaxes(t, -2, -1))
    return t[..., _PI[:, None], _PJ[:, None], _PI[None, :], _PJ[None, :]]  # [..., 6, 6]


def voigt_to_tensor3(e: np.ndarray) -> np.ndarray:
    """Piezoelectric ``e`` ``[..., 3, 6]`` (IEEE order, no factors) -> ``[..., 3, 3, 3]``:
    ``e_ijk = e_iJ``."""
    e = np.asarray(e, dtype=np.float64)
    return e[..., :, _VOIGT]  # [..., 3, 3, 3]


def tensor3_to_voigt(t: np.ndarray) -> np.ndarray:
    """``[..., 3, 3, 3] -> [..., 3, 6]``; ``e_iJ`` is the mean of ``e_ijk`` and ``e_ikj``."""
    t = np.asarray(t, dtype=np.float64)
    t = 0.5 * (t + np.swapaxes(t, -2, -1))
    return t[..., :, _PI, _PJ]  # [..., 3, 6]
