"""Rotations of structures and Cartesian tensors: one helper each, for the data checks, the
evaluation and the tests.

``rotate_cartesian(T, R)`` is ``T'_{a b ...} = R_{a a'} R_{b b'} ... T_{a' b' ...}`` (times
``det R`` for an axial tensor), on numpy arrays or torch tensors alike.

>>> import numpy as np
>>> r = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
>>> rotate_cartesian(np.array([1.0, 0, 0]), r).tolist()
[0.0, 1.0, 0.0]
"""
from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from e3nn import o3

__all__ = ["random_rotation", "rotate_atoms", "rotate_cartesian"]


def random_rotation(dtype: torch.dtype = torch.float64, generator: torch.Generator | None = None,
                    proper: bool = True) -> torch.Tensor:
    """A Haar-random rotation matrix ``[3, 3]``; ``-R`` (det -1) when ``proper=False``.

    Without a generator this is ``e3nn.o3.rand_matrix``; with one, the same distribution is
    drawn from the generator (uniform alpha, gamma and cos(beta), then ``o3.angles_to_matrix``).
    """
    if generator is None:
        rotation = o3.rand_matrix(dtype=dtype)  # [3, 3]
    else:
        u = torch.rand(3, generator=generator, dtype=torch.float64)
        alpha, gamma = 2 * torch.pi * u[0], 2 * torch.pi * u[1]
        beta = torch.acos(2 * u[2] - 1)
        rotation = o3.angles_to_matrix(alpha, beta, gamma).to(dtype)  # [3, 3]
    return rotation if proper else -rotation


def _as_numpy_matrix(rotation: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(rotation, torch.Tensor):
        rotation = rotation.detach().cpu().numpy()
    return np.asarray(rotation, dtype=np.float64).reshape(3, 3)


def rotate_atoms(atoms: Atoms, rotation: torch.Tensor | np.ndarray) -> Atoms:
    """A copy of ``atoms`` with positions and cell rows mapped by ``r -> R r``."""
    matrix = _as_numpy_matrix(rotation)
    out = atoms.copy()
    out.positions = atoms.positions @ matrix.T  # [N, 3]
    out.set_cell(np.asarray(atoms.cell) @ matrix.T, scale_atoms=False)  # [3, 3]
    return out


def rotate_cartesian(tensor: torch.Tensor | np.ndarray, rotation: torch.Tensor | np.ndarray,
                     axial: bool = False, order: int | None = None) -> torch.Tensor | np.ndarray:
    """Apply ``R`` to each of the last ``order`` indices of ``tensor`` (all of them by default).

    ``T'_{a b ...} = R_{a a'} R_{b b'} ... T_{a' b' ...}``, times ``det R`` when ``axial``.
    Returns the same kind of array as ``tensor``.

    Parameters
    ----------
    tensor : Tensor or ndarray, shape (..., 3, ..., 3)
    rotation : Tensor or ndarray, shape (3, 3)
    axial : bool
    order : int, optional
        Number of trailing Cartesian indices; ``None`` means every index.
    """
    is_numpy = not isinstance(tensor, torch.Tensor)
    x = torch.as_tensor(np.asarray(tensor)) if is_numpy else tensor
    matrix = torch.as_tensor(_as_numpy_matrix(rotation), dtype=x.dtype, device=x.device)
    order = x.dim() if order is None else order
    if order > x.dim() or any(size != 3 for size in x.shape[x.dim() - order:]):
        raise ValueError(f"expected {order} trailing Cartesian indices of size 3, "
                         f"got shape {tuple(x.shape)}")
    for axis in range(x.dim() - order, x.dim()):
        x = torch.movedim(torch.movedim(x, axis, -1) @ matrix.T, -1, axis)  # same shape
    if axial:
        x = x * torch.linalg.det(matrix)
    return x.numpy() if is_numpy else x
