"""Neighbour pairs of sparse cells with a k-d tree: cost set by the atoms, not by empty space.

The binning neighbour lists (matscipy, ASE) divide the cell into bins of the cutoff's size, so
their memory and time grow with ``volume / cutoff^3``: 3 atoms in a 100 Angstrom cubic cell with
the 0.1 Angstrom overlap check are 10^9 bins (8 s and 3.9 GB with matscipy).  Here the atoms are
wrapped into the cell, copied to the periodic images that can lie within the cutoff (27 copies
when the cell is wider than the cutoff), and paired with ``scipy.spatial.cKDTree``: memory
O(images x atoms), time O(images x atoms x log atoms), whatever the cell's volume.
:func:`tsym.runtime.graph.neighbour_list` uses it when the bins would outnumber the atoms
(:func:`bin_count`).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["bin_count", "image_shifts", "tree_pairs"]


def _heights(cell: np.ndarray) -> np.ndarray:
    """Distances between lattice planes, ``[3]``: ``1 / |reciprocal vector|``."""
    return 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)


def bin_count(cell: np.ndarray, cutoff: float) -> float:
    """The number of cutoff-sized bins a binning neighbour list makes of a full-rank ``cell``.

    >>> bin_count(np.eye(3) * 100.0, 0.1)
    1000000000.0
    """
    return float(np.prod(np.maximum(np.floor(_heights(cell) / cutoff), 1.0)))


def image_shifts(cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """Integer shifts ``[M, 3]`` of the images that wrapped atoms within ``cutoff`` can lie in.

    With fractional coordinates in ``[0, 1)``, a pair at distance ``r`` differs by less than
    ``r / h_a + 1`` cells along axis ``a`` (``h_a`` the plane spacing), so ``|S_a| <=
    ceil(cutoff / h_a)``; zero along non-periodic axes.

    >>> len(image_shifts(np.eye(3) * 100.0, np.array([True, True, False]), 0.1))
    9
    """
    reach = np.where(pbc, np.ceil(cutoff / _heights(cell)), 0).astype(np.int64)  # [3]
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in reach], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)  # [M, 3]


def tree_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ordered pairs ``(i, j, S)`` with ``|r_j - r_i + S @ cell| <= cutoff`` (a superset).

    ``cell`` must be full rank (rows along non-periodic axes span the atoms' extent, as
    :func:`tsym.runtime.graph._working_cell` makes them).  ``i == j`` with ``S == 0`` is
    included; the caller filters and sorts.
    """
    n = len(positions)
    frac = positions @ np.linalg.inv(cell)  # [N, 3]
    home = np.where(pbc, np.floor(frac), 0.0)  # [N, 3] the cell each atom sits in
    wrapped = positions - home @ cell  # [N, 3], fractional coordinates in [0, 1) on periodic axes
    shifts = image_shifts(cell, pbc, cutoff)  # [M, 3]
    images = (wrapped[None, :, :] + (shifts @ cell)[:, None, :]).reshape(-1, 3)  # [M * N, 3]
    reach = cutoff * (1.0 + 1e-9) + 1e-12  # the caller recomputes distances and cuts at cutoff
    found = cKDTree(wrapped).sparse_distance_matrix(cKDTree(images), reach,
                                                    output_type="ndarray")
    i = found["i"].astype(np.int64)  # [P]
    image, j = np.divmod(found["j"].astype(np.int64), n)  # [P], [P]
    s = shifts[image] + home[i].astype(np.int64) - home[j].astype(np.int64)  # [P, 3]
    return i, j, s
