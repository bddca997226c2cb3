"""Equivariance helpers for tests of models that map structures to Cartesian tensors.

:func:`assert_equivariant` checks, in one call, that a function of a list of ``ase.Atoms``
returns Cartesian tensors that rotate with proper and improper rotations (axial tensors pick up
``det R``), do not change under translations, and whose atom-level rows follow a permutation of
the atoms.  Like e3nn's ``assert_equivariant`` it ships with the package and its own tests prove
that it fails on broken functions.

Examples
--------
>>> import numpy as np
>>> from ase.build import molecule
>>> def dipole_like(structures):  # sum of r_j - r_i over ordered pairs, per atom
...     return {"v": np.concatenate([(a.positions.sum(0) - len(a) * a.positions)
...                                  for a in structures])}
>>> assert_equivariant(dipole_like, [molecule("H2O")], orders={"v": 1})
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from tsym.runtime.equivariance._rotations import random_rotation, rotate_atoms, rotate_cartesian

__all__ = ["default_dtype", "random_rotation", "rotate_atoms", "rotate_cartesian",
           "assert_equivariant", "equivariance_errors"]  # the rotations: _rotations


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """torch's default dtype set to ``dtype`` inside the block (e3nn builds its Wigner matrices
    and Clebsch-Gordan constants in it: float64 checks need float64 there)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@dataclass(frozen=True)
class _Transform:
    """One rigid motion of every structure plus a permutation of each structure's atoms."""

    name: str
    rotation: np.ndarray  # [3, 3]
    translations: tuple[np.ndarray, ...]  # per structure [3]
    permutations: tuple[np.ndarray, ...]  # per structure [n_atoms]: new atom k is old perm[k]

    def apply(self, structures: Sequence[Atoms]) -> list[Atoms]:
        out = []
        for atoms, shift, perm in zip(structures, self.translations, self.permutations):
            moved = rotate_atoms(atoms[perm], self.rotation)
            moved.positions = moved.positions + shift
            out.append(moved)
        return out

    def atom_rows(self, structures: Sequence[Atoms]) -> np.ndarray:
        """Rows of the concatenated atom-level output that land at each new row."""
        offsets = np.cumsum([0] + [len(a) for a in structures])
        return np.concatenate([p + o for p, o in zip(self.permutations, offsets)])


def _transforms(structures: Sequence[Atoms], seed: int, parity: bool) -> list[_Transform]:
    """The combined check first, then each symmetry alone (used to name what broke)."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    rotation = random_rotation(torch.float64, generator).numpy()
    shifts = tuple(rng.normal(scale=3.0, size=3) for _ in structures)
    perms = tuple(rng.permutation(len(a)) for a in structures)
    zero = tuple(np.zeros(3) for _ in structures)
    same = tuple(np.arange(len(a)) for a in structures)
    eye = np.eye(3)
    out = [_Transform("proper rotation + translation + permutation", rotation, shifts, perms)]
    if parity:
        out.append(_Transform("improper rotation + translation + permutation", -rotation,
                              shifts, perms))
    out += [_Transform("proper rotation", rotation, zero, same),
            _Transform("translation", eye, shifts, same),
            _Transform("atom permutation", eye, zero, perms)]
    if parity:
        out.append(_Transform("inversion", -eye, zero, same))
    return out


def _evaluate(fn: Callable, structures: list[Atoms], names: Sequence[str]) -> dict[str, np.ndarray]:
    result = fn(structures)
    out = {}
    for name in names:
        if name not in result:
            raise ValueError(f"fn returned no output {name!r} (it returned {sorted(result)})")
        value = result[name]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().to(torch.float64).numpy()
        out[name] = np.asarray(value, dtype=np.float64)
    return out


def _is_atom_level(name: str, value: np.ndarray, n_atoms: int, n_structures: int,
                   atom_level: dict[str, bool] | None) -> bool:
    if atom_level is not None and name in atom_level:
        return atom_level[name]
    if n_atoms == n_structures:
        raise ValueError(f"cannot tell whether output {name!r} is per atom or per structure "
                         f"({n_atoms} atoms in {n_structures} structures): pass atom_level")
    if value.shape[0] not in (n_atoms, n_structures):
        raise ValueError(f"output {name!r} has {value.shape[0]} rows, expected {n_atoms} "
                         f"(per atom) or {n_structures} (per structure)")
    return value.shape[0] == n_atoms


def _moved_output(value: np.ndarray, transform: _Transform, structures: Sequence[Atoms],
                  per_atom: bool, axial: bool, order: int) -> np.ndarray:
    """``g.value``: rows permuted (per-atom outputs), Cartesian indices rotated."""
    if per_atom:
        value = value[transform.atom_rows(structures)]
    return rotate_cartesian(value, transform.rotation, axial, order=order)


class _Twin:
    """The rounding allowance of :func:`assert_equivariant` (``reference=``): none without a twin."""

    def __init__(self, fn: Callable | None, structures: list[Atoms], names: Sequence[str],
                 base: dict[str, np.ndarray]):
        self.fn, self.structures, self.names = fn, structures, names
        if fn is not None:
            self.base = _evaluate(fn, structures, names)
            # per row: the Frobenius norm of f(x) - F(x), an entrywise bound after any g.
            self.row_error = {n: np.sqrt(((base[n] - self.base[n]) ** 2)
                                         .reshape(len(base[n]), -1).sum(1)) for n in names}

    def slack(self, transform: _Transform, moved: list[Atoms], actual: dict, per_atom: dict,
              orders: dict, axial: dict) -> dict[str, np.ndarray]:
        if self.fn is None:
            return {}
        ref = _evaluate(self.fn, moved, self.names)
        out, self.twin_error = {}, {}
        for n in self.names:
            rows = self.row_error[n]
            if per_atom[n]:
                rows = rows[transform.atom_rows(self.structures)]
            expected = _moved_output(self.base[n], transform, self.structures, per_atom[n],
                                     axial.get(n, False), orders[n])
            shape = (-1,) + (1,) * (actual[n].ndim - 1)
            self.twin_error[n] = (np.abs(ref[n] - expected), expected)
            out[n] = np.abs(actual[n] - ref[n]) + rows.reshape(shape) + self.twin_error[n][0]
        return out


class _Comparison:
    """The one loop of both checks: the untransformed run of ``fn`` (structures, output names,
    outputs, axial flags, whether each output is atom level), then, for each transformation
    ``g``, ``(g, moved structures, f(g x), g.f(x))`` by output name."""

    def __init__(self, fn, atoms_list, orders, axial, atom_level, parity, seed, shape_error):
        self.fn, self.orders, self.parity, self.seed = fn, orders, parity, seed
        self.shape_error = shape_error
        self.structures = list(atoms_list)
        self.names = list(orders)
        self.axial = dict(axial or {})
        n_atoms, n_structures = sum(len(a) for a in self.structures), len(self.structures)
        self.base = _evaluate(fn, self.structures, self.names)
        self.per_atom = {name: _is_atom_level(name, self.base[name], n_atoms, n_structures,
                                              atom_level) for name in self.names}

    def __iter__(self):
        for transform in _transforms(self.structures, self.seed, self.parity):
            moved = transform.apply(self.structures)
            actual = _evaluate(self.fn, moved, self.names)
            expected = {}
            for name in self.names:
                expected[name] = _moved_output(self.base[name], transform, self.structures,
                                               self.per_atom[name], self.axial.get(name, False),
                                               self.orders[name])
                if actual[name].shape != expected[name].shape:
                    raise self.shape_error(f"output {name!r} changed shape under "
                                           f"{transform.name}: {expected[name].shape} -> "
                                           f"{actual[name].shape}")
            yield transform, moved, actual, expected


def assert_equivariant(fn: Callable[[list[Atoms]], dict], atoms_list: Sequence[Atoms],
                       orders: dict[str, int], axial: dict[str, bool] | None = None,
                       atol: float = 1e-8, rtol: float = 1e-8, *,
                       atom_level: dict[str, bool] | None = None, parity: bool = True,
                       seed: int = 0, reference: Callable[[list[Atoms]], dict] | None = None
                       ) -> None:
    """Check that ``fn`` is equivariant under rotation, inversion, translation and permutation.

    Parameters
    ----------
    fn : callable
        ``fn(list_of_atoms) -> {name: array [n, 3, ..., 3]}`` with ``n`` the number of
        structures (per-structure output) or the total number of atoms (per-atom output, rows
        in the order of the atoms, structure after structure).  Torch or numpy arrays.
    atoms_list : sequence of ase.Atoms
    orders : dict
        Number of Cartesian indices of each output to check (0 for invariants).
    axial : dict, optional
        Outputs that pick up ``det R`` (pseudotensors); the rest are polar.
    atol, rtol : float
        Passes when ``|actual - expected| <= atol + rtol * |expected|`` everywhere.
    atom_level : dict, optional
        Per-atom (True) or per-structure (False) outputs; inferred from the number of rows
        where that is unambiguous.
    parity : bool
        Also check improper rotations (set False for chiral models).
    seed : int
        Seeds the random rotation, translations and permutations.
    reference : callable, optional
        A higher-precision twin of ``fn`` (the same model in float64).  Each comparison then also
        allows ``fn``'s own rounding error, measured against the twin: by the triangle inequality
        ``|f(gx) - g.f(x)| <= |f(gx) - F(gx)| + |g.(f(x) - F(x))| + |F(gx) - g.F(x)|`` (``F`` the
        twin; ``g.`` moves a row's Frobenius norm to at most that norm in each entry), while the
        twin itself must pass ``atol``/``rtol``.  The check then holds on any CPU, whatever its
        kernels' summation order, and ``atol`` stays at the twin's precision.

    Raises
    ------
    AssertionError
        Naming the output, the transformations it breaks and the largest error.
    """
    runs = _Comparison(fn, atoms_list, orders, axial, atom_level, parity, seed, AssertionError)
    axial = runs.axial
    twin = _Twin(reference, runs.structures, runs.names, runs.base)
    failures: dict[str, list[tuple[str, float]]] = {}
    for transform, moved, actual, expected in runs:
        slack = twin.slack(transform, moved, actual, runs.per_atom, orders, axial)
        for name in runs.names:
            if name in slack:  # the twin itself is held to atol, rtol
                twin_error, twin_expected = twin.twin_error[name]
                if not np.all(twin_error <= atol + rtol * np.abs(twin_expected)):
                    failures.setdefault(name, []).append((transform.name + " (the reference twin)",
                                                          float(twin_error.max())))
            error = np.abs(actual[name] - expected[name])
            if not np.all(error <= atol + rtol * np.abs(expected[name]) + slack.get(name, 0.0)):
                failures.setdefault(name, []).append((transform.name, float(error.max())))
    if failures:
        lines = []
        for name, broken in failures.items():
            kind = "axial" if axial.get(name, False) else "polar"
            worst = max(err for _, err in broken)
            what = "; ".join(f"{t} (max error {e:.3g})" for t, e in broken)
            lines.append(f"output {name!r} (order {orders[name]}, {kind}) is not equivariant: "
                         f"max error {worst:.3g} (atol={atol:g}, rtol={rtol:g}); fails under: "
                         f"{what}")
        raise AssertionError("\n".join(lines))


def equivariance_errors(fn: Callable[[list[Atoms]], dict], atoms_list: Sequence[Atoms],
                        orders: dict[str, int], axial: dict[str, bool] | None = None, *,
                        atom_level: dict[str, bool] | None = None, parity: bool = True,
                        seed: int = 0) -> dict[str, dict[str, tuple[float, float]]]:
    """What :func:`assert_equivariant` measures, as numbers: for each output and transformation,
    ``(max |f(g x) - g.f(x)|, max |g.f(x)|)`` (same transformations, same arguments).

    >>> import numpy as np
    >>> from ase.build import molecule
    >>> def centred(structures):  # per-atom positions minus their centre: a polar vector
    ...     return {"r": np.concatenate([a.positions - a.positions.mean(0) for a in structures])}
    >>> errors = equivariance_errors(centred, [molecule("CH4")], {"r": 1})["r"]
    >>> max(err for err, scale in errors.values()) < 1e-12
    True
    """
    runs = _Comparison(fn, atoms_list, orders, axial, atom_level, parity, seed, ValueError)
    out: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in runs.names}
    for transform, _, actual, expected in runs:
        for name in runs.names:
            error = float(np.abs(actual[name] - expected[name]).max(initial=0.0))
            out[name][transform.name] = (error, float(np.abs(expected[name]).max(initial=0.0)))
    return out
