"""Tensor and crystal-symmetry helpers for the converters (numpy + spglib, no pymatgen).

* :func:`symmetry_ops`: the point-group operations of a crystal as Cartesian matrices, with the
  atom permutation of each space-group operation (spglib).
* :func:`max_operation_deviation`, :func:`site_symmetry_deviation`: the worst operation's
  deviation from invariance of a structure-level tensor (``g T = T``) or per-atom tensors
  (``T_{g(a)} = g T_a``), the converters' checks;
* :func:`point_group_deviation`: ``|T - P(T)| / |T|``, ``P`` the point-group average (evaluation).
* :func:`ieee_rotation`: the rotation from a structure's Cartesian frame to the IEEE 176-1987
  standard frame, following pymatgen's ``Tensor.get_ieee_rotation`` rules (reimplemented here).

Tensors are rotated with :func:`tsym.runtime.equivariance.rotate_cartesian`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import spglib
from ase import Atoms

from tsym.runtime.equivariance import rotate_cartesian

__all__ = ["SymmetryOps",
           "symmetry_ops", "max_operation_deviation", "point_group_deviation", "site_symmetry_deviation", "crystal_system",
           "ieee_rotation", "ieee_candidates", "atoms_from_pymatgen"]

_LETTERS = "abcdefghijkl"


@dataclass(frozen=True)
class SymmetryOps:
    """Point-group operations of a crystal in its Cartesian frame.

    ``rotations`` [n_ops, 3, 3] (Cartesian, ``x -> R x``); ``permutations`` [n_ops, n_atoms]: atom
    ``a`` goes to atom ``permutations[k, a]`` under operation ``k`` (-1 where no image was found);
    ``number``: space-group number; ``dataset``: spglib's dataset.
    """

    rotations: np.ndarray
    permutations: np.ndarray
    number: int
    dataset: object


def symmetry_ops(atoms, symprec: float = 1e-2, angle_tolerance: float = 5.0) -> SymmetryOps:
    """spglib's space group of a periodic ``atoms``, as Cartesian rotations and atom maps."""
    lattice = np.asarray(atoms.cell, dtype=np.float64)  # [3, 3] rows
    frac = atoms.get_scaled_positions(wrap=True)  # [n, 3]
    with warnings.catch_warnings():  # spglib 2.x warns about its old error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ds = spglib.get_symmetry_dataset((lattice, frac, atoms.numbers), symprec=symprec,
                                             angle_tolerance=angle_tolerance)
        except Exception as err:  # noqa: BLE001 - spglib's own error type moved across versions
            raise ValueError(f"spglib failed: {err}") from None
    if ds is None:
        raise ValueError("spglib found no symmetry (bad cell or positions)")
    lt_inv = np.linalg.inv(lattice.T)
    rotations = np.einsum("ab,kbc,cd->kad", lattice.T, ds.rotations, lt_inv)  # [ops, 3, 3]
    perms = np.full((len(ds.rotations), len(atoms)), -1, dtype=np.int64)
    for k, (w, shift) in enumerate(zip(ds.rotations, ds.translations)):
        image = frac @ w.T + shift  # [n, 3]
        delta = image[:, None, :] - frac[None, :, :]  # [n, n, 3]
        delta -= np.round(delta)
        dist = np.linalg.norm(delta @ lattice, axis=-1)  # [n, n]
        best = np.argmin(dist, axis=1)
        ok = dist[np.arange(len(atoms)), best] < max(3 * symprec, 1e-3)
        perms[k] = np.where(ok & (atoms.numbers[best] == atoms.numbers), best, -1)
    return SymmetryOps(rotations, perms, int(ds.number), ds)


def max_operation_deviation(t: np.ndarray, ops: SymmetryOps) -> float:
    """``max_g |g T - T| / |T|`` for a structure-level tensor ``t`` [3, ..., 3] (0 if T = 0): the
    worst single operation (the converters' invariance check)."""
    t = np.asarray(t, dtype=np.float64)
    norm = np.linalg.norm(t)
    if norm == 0:
        return 0.0
    return max(float(np.linalg.norm(rotate_cartesian(t, r) - t)) for r in ops.rotations) / norm


def point_group_deviation(tensor: np.ndarray, atoms, *, level: str = "structure",
                          axial: bool = False, symprec: float = 1e-2, ops=None) -> float:
    """``|T - P(T)| / |T|`` with ``P`` the average over the crystal's point group.

    Structure level: ``P(T) = mean_g s_g R_g . T`` (``R_g`` on every index, ``s_g = det R_g``
    for an axial tensor, else 1).  Atom level (``tensor`` ``[n_atoms, 3, ..., 3]``): the site
    average ``P(T)_{g(a)} = mean_g s_g R_g . T_a`` over the space-group operations with their
    atom maps.  The operations are spglib's (``symprec`` in Angstrom), in Cartesian form; ``ops``
    (a :class:`SymmetryOps`) skips the search.  0 for a zero tensor.
    """
    t = np.asarray(tensor, dtype=np.float64)
    ops = symmetry_ops(atoms, symprec=symprec) if ops is None else ops
    signs = np.linalg.det(ops.rotations) if axial else np.ones(len(ops.rotations))
    if level == "atom":
        if (ops.permutations < 0).any():
            raise ValueError("a symmetry operation has no atom map at this symprec")
        order = t.ndim - 1
        avg = np.zeros_like(t)
        for r, s, perm in zip(ops.rotations, signs, ops.permutations):
            np.add.at(avg, perm, s * rotate_cartesian(t, r, order=order))
    else:
        order = t.ndim
        avg = sum(s * rotate_cartesian(t, r, order=order) for r, s in zip(ops.rotations, signs))
    avg = avg / len(ops.rotations)
    norm = np.linalg.norm(t)
    return float(np.linalg.norm(t - avg) / norm) if norm > 0 else 0.0


def site_symmetry_deviation(t: np.ndarray, ops: SymmetryOps, mask: np.ndarray | None = None
                            ) -> tuple[float, int]:
    """``max |T_{g(a)} - g T_a| / max(|T_a|, |T_{g(a)}|)`` over operations and labelled atoms.

    ``t`` [n_atoms, 3, ..., 3].  Returns the deviation and the number of (operation, atom) pairs
    whose image atom was not found or is unlabelled while the atom is (counted, not scored).
    """
    t = np.asarray(t, dtype=np.float64)
    n = t.shape[0]
    mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    flat = np.where(mask[:, None], t.reshape(n, -1), 0.0)  # [n, 3^k], unlabelled rows zeroed
    norms = np.linalg.norm(flat, axis=1)  # [n]
    worst, missing = 0.0, 0
    for r, perm in zip(ops.rotations, ops.permutations):
        rotated = rotate_cartesian(flat.reshape(t.shape), r, order=t.ndim - 1).reshape(n, -1)  # [n, 3^k]
        found = perm >= 0
        ok = mask & found & mask[np.where(found, perm, 0)]  # [n]
        missing += int((mask & ~ok).sum())
        a = np.flatnonzero(ok)
        if a.size == 0:
            continue
        b = perm[a]
        scale = np.maximum(norms[a], norms[b])  # [m]
        dev = np.linalg.norm(flat[b] - rotated[a], axis=1)  # [m]
        rel = np.where(scale > 0, dev / np.where(scale > 0, scale, 1.0), 0.0)
        worst = max(worst, float(rel.max()))
    return worst, missing


def crystal_system(number: int) -> str:
    """Crystal system of a space-group number (trigonal includes rhombohedral groups)."""
    for top, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"),
                      (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal")):
        if number <= top:
            return name
    return "cubic"


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _conventional(atoms, ops: SymmetryOps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conventional lattice vectors (rows) in the structure's frame, their lengths and angles."""
    lattice = np.asarray(atoms.cell, dtype=np.float64)
    vecs = (lattice.T @ np.linalg.inv(ops.dataset.transformation_matrix)).T  # [3, 3] rows
    lengths = np.linalg.norm(vecs, axis=1)
    cos = [vecs[1] @ vecs[2], vecs[0] @ vecs[2], vecs[0] @ vecs[1]] / (
        lengths[[1, 0, 0]] * lengths[[2, 2, 1]])
    return vecs, lengths, np.degrees(np.arccos(np.clip(cos, -1, 1)))  # alpha, beta, gamma


def ieee_rotation(atoms, ops: SymmetryOps) -> np.ndarray:
    """Rotation ``R`` [3, 3] (rows: IEEE axes x1, x2, x3 in the structure's Cartesian frame).

    ``T_ieee = rotate_cartesian(T_structure, R)`` and ``T_structure = rotate_cartesian(T_ieee, R.T)``.  The rules are
    those of pymatgen's ``get_ieee_rotation`` (conventional cell from spglib's transformation
    matrix): cubic a, b, c || x1, x2, x3; tetragonal c || x3, a || x1; orthorhombic sorted by
    length c < a < b; trigonal/hexagonal c (the 3-fold axis) || x3, a || x1; monoclinic the unique
    axis || x2, the shorter other axis || x3; triclinic shortest || x3 ... then made a proper
    rotation (x1 normalised, x2 orthogonalised against x1, x3 = x1 x x2).
    """
    vecs, lengths, angles = _conventional(atoms, ops)
    units = vecs / lengths[:, None]
    system = crystal_system(ops.number)
    r = np.zeros((3, 3))
    if system == "cubic":
        r = units.copy()
    elif system == "tetragonal":
        order = np.argsort(lengths, kind="stable")
        r, sl = units[order].copy(), lengths[order]
        if abs(sl[2] - sl[1]) < abs(sl[1] - sl[0]):  # the odd length goes to x3
            r[[0, 2]] = r[[2, 0]]
        r[1] = _unit(np.cross(r[2], r[0]))
    elif system == "orthorhombic":
        r = np.roll(units[np.argsort(lengths, kind="stable")], 2, axis=0)
    elif system in ("trigonal", "hexagonal"):
        three = int(np.argmin(np.abs(angles - 120.0)))
        others = np.flatnonzero(angles != angles[three])
        r[2], r[0] = units[three], units[others[0]]
        r[1] = _unit(np.cross(r[2], r[0]))
    elif system == "monoclinic":
        unique = int(np.argmax(np.abs(angles - 90.0)))
        others = np.flatnonzero(angles != angles[unique])
        r[1] = units[unique]
        r[2] = units[others[np.argmin(lengths[others])]]
        r[0] = np.cross(r[1], r[2])
    else:
        r = units[np.argsort(lengths, kind="stable")].copy()
        r[1] = _unit(np.cross(r[2], r[0]))
        r[0] = np.cross(r[1], r[2])
    x = _unit(r[0])
    y = _unit(r[1])
    y = _unit(y - (x @ y) * x)
    return np.stack([x, y, np.cross(x, y)])


def ieee_candidates(atoms, ops: SymmetryOps) -> list[tuple[str, np.ndarray]]:
    """Frames to try, first pymatgen's IEEE rule, then other settings of the same standard.

    ``"pymatgen"``: :func:`ieee_rotation`.  ``"conventional_abc"``: x1, x2, x3 along a, b, c of
    spglib's standard conventional cell (for orthorhombic mm2 this puts the 2-fold axis on x3,
    where pymatgen's length rule may not).  ``"rot90_x3"``: the pymatgen frame turned by 90
    degrees about x3 (hexagonal -6m2 in the P-62m setting: x1 normal to a instead of along it).
    """
    r = ieee_rotation(atoms, ops)
    vecs, lengths, _ = _conventional(atoms, ops)
    x, y = vecs[0] / lengths[0], _unit(vecs[1] - (vecs[1] @ vecs[0]) / lengths[0] ** 2 * vecs[0])
    abc = np.stack([x, y, np.cross(x, y)])
    return [("pymatgen", r), ("conventional_abc", abc),
            ("rot90_x3", np.stack([r[1], -r[0], r[2]]))]


def atoms_from_pymatgen(d: dict):
    """``ase.Atoms`` from a pymatgen ``Structure.as_dict()`` (no pymatgen needed).

    Uses ``lattice.matrix`` (rows), ``sites[].xyz`` (Cartesian; ``abc`` @ matrix when absent) and
    ``sites[].species[0].element``.  Raises ``ValueError`` for partial occupancy.
    """
    matrix = np.asarray(d["lattice"]["matrix"], dtype=np.float64)
    symbols, positions = [], []
    for k, site in enumerate(d["sites"]):
        species = site["species"]
        if len(species) != 1 or abs(float(species[0].get("occu", 1)) - 1) > 1e-6:
            raise ValueError(f"site {k} is disordered ({species})")
        symbols.append(species[0]["element"])
        xyz = site.get("xyz")
        positions.append(xyz if xyz is not None else np.asarray(site["abc"]) @ matrix)
    pbc = d["lattice"].get("pbc", (True, True, True))
    return Atoms(symbols=symbols, positions=positions, cell=matrix, pbc=pbc)
