"""Harmonic IR and Raman spectra: normal modes of a Hessian plus derivative tensors.

The Hessian (eV/Angstrom^2, ``[3N, 3N]`` or ``[N, 3, N, 3]``, or ASE's ``VibrationsData``) is
mass-weighted with ASE's masses; the rigid translations and rotations (5 for a linear
structure, 6 otherwise) are projected out exactly, by diagonalising the Hessian in an orthonormal
basis of their complement, so ``3N - 6`` (``3N - 5``) modes remain.  Energies and modes follow
ASE's ``VibrationsData`` conventions (energy ``hbar omega`` in eV, modes as Cartesian displacements
per unit normal coordinate, ``[modes, N, 3]``).  For mode ``k`` with ``dmu/dQ_k`` and
``dalpha/dQ_k`` (the APTs and Raman tensors contracted with the mode):

* IR intensity ``A_k = N_A pi / (3 c^2) |dmu/dQ_k|^2 / (4 pi eps0)`` in km/mol (constants from
  ``ase.units``; ASE's ``Infrared`` prints km/mol with the rounded factor 42.255 per
  (D/Angstrom)^2/amu, 3e-5 below this one);
* Raman activity ``S_k = 45 a'^2 + 7 g'^2`` in Angstrom^4/amu, with ``a' = tr(dalpha)/3`` and
  ``g'^2 = ((xx-yy)^2 + (yy-zz)^2 + (zz-xx)^2)/2 + 3 (xy^2 + yz^2 + zx^2)`` of the symmetrised
  ``dalpha/dQ_k``, and depolarisation ratio ``rho_k = 3 g'^2 / (45 a'^2 + 4 g'^2)`` (NaN for a
  mode with neither).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.vibrations import VibrationsData

from tsym.runtime.spectra._derivatives import DerivativeError
from tsym.runtime.spectra._units import SPECTRUM_UNITS, dipole_factor, polarizability_factor

__all__ = ["HarmonicSpectrum", "normal_modes", "harmonic_spectrum", "IR_KM_PER_MOL",
           "rigid_body_basis"]

#: km/mol of an IR intensity |dmu/dQ|^2 = 1 e^2/amu (SI constants of ase.units)
IR_KM_PER_MOL = (units._Nav * math.pi / (3 * units._c ** 2) / (4 * math.pi * units._eps0)
                 * units._e ** 2 / units._amu / 1000.0)
#: hbar omega in eV of a mass-weighted Hessian eigenvalue of 1 eV/(Angstrom^2 amu) (ASE's)
_ENERGY = units._hbar * units.m / math.sqrt(units._e * units._amu)


def _hessian_2d(atoms: Atoms, hessian) -> np.ndarray:
    """``[3N, 3N]`` symmetrised Hessian in eV/Angstrom^2, its shape checked."""
    n = len(atoms)
    if isinstance(hessian, VibrationsData):
        if len(hessian.get_indices()) != n:
            raise DerivativeError(f"the VibrationsData covers {len(hessian.get_indices())} of "
                                  f"the {n} atoms; spectra need every atom displaced")
        hessian = hessian.get_hessian_2d()
    h = np.asarray(hessian, dtype=np.float64)
    if h.shape == (n, 3, n, 3):
        h = h.reshape(3 * n, 3 * n)
    if h.shape != (3 * n, 3 * n):
        raise DerivativeError(f"a Hessian of shape {h.shape} for {n} atoms: expected "
                              f"({3 * n}, {3 * n}) or ({n}, 3, {n}, 3), in eV/Angstrom^2")
    if not np.isfinite(h).all():
        raise DerivativeError("the Hessian holds NaN or inf")
    return 0.5 * (h + h.T)


def rigid_body_basis(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations ``[3N, k]`` (k = 3, 5 or 6).

    Column space of ``sqrt(m_i) e_a`` and ``sqrt(m_i) e_a x (r_i - r_com)``; a rotation about
    the axis of a linear structure is the zero vector and drops out (SVD rank, relative 1e-8).
    """
    masses = atoms.get_masses()  # [N]
    sqrt_m = np.sqrt(masses)
    centred = atoms.positions - masses @ atoms.positions / masses.sum()  # [N, 3]
    vectors = []
    for a in range(3):
        e = np.zeros(3)
        e[a] = 1.0
        vectors.append((sqrt_m[:, None] * e).ravel())  # translation [3N]
        vectors.append((sqrt_m[:, None] * np.cross(e, centred)).ravel())  # rotation [3N]
    u, s, _ = np.linalg.svd(np.stack(vectors, axis=1), full_matrices=False)  # [3N, 6]
    return u[:, s > 1e-8 * s.max()]


def normal_modes(atoms: Atoms, hessian, *, project: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic energies ``[M]`` (eV; imaginary ones negative) and modes ``[M, N, 3]``.

    ``project`` removes the rigid translations and rotations (``M = 3N - 6`` or ``3N - 5``);
    without it all ``3N`` modes of the mass-weighted Hessian are returned, as ASE's
    ``VibrationsData.get_energies_and_modes`` gives them.  Modes are ASE's: the mass-weighted
    eigenvectors times ``m^-1/2`` (Angstrom per unit normal coordinate, amu^-1/2).
    """
    h = _hessian_2d(atoms, hessian)  # [3N, 3N]
    weights = np.repeat(atoms.get_masses() ** -0.5, 3)  # [3N]
    h_mw = weights[:, None] * h * weights[None, :]  # [3N, 3N] eV/(A^2 amu)
    if project:
        rigid = rigid_body_basis(atoms)  # [3N, k]
        full, _ = np.linalg.qr(np.concatenate([rigid, np.eye(len(h))], axis=1))
        inner = full[:, rigid.shape[1]:len(h)]  # [3N, M] orthonormal complement
        evals, v = np.linalg.eigh(inner.T @ h_mw @ inner)  # [M], [M, M]
        vectors = inner @ v  # [3N, M]
    else:
        evals, vectors = np.linalg.eigh(h_mw)
    energies = np.sign(evals) * np.sqrt(np.abs(evals)) * _ENERGY  # [M] eV
    modes = (vectors * weights[:, None]).T.reshape(len(evals), len(atoms), 3)  # [M, N, 3]
    return energies, modes


@dataclass(frozen=True)
class HarmonicSpectrum:
    """Normal modes and their IR and Raman strengths; units in :attr:`units`.

    Attributes
    ----------
    energies : ndarray [M]
        ``hbar omega`` in eV (negative: an imaginary frequency).
    modes : ndarray [M, N, 3]
        Cartesian displacement per unit normal coordinate (amu^-1/2), ASE's convention.
    dipole_derivatives : ndarray [M, 3] or None
        ``dmu/dQ`` in e amu^-1/2.
    polarizability_derivatives : ndarray [M, 3, 3] or None
        ``dalpha/dQ`` in Angstrom^2 amu^-1/2.
    """
    energies: np.ndarray
    modes: np.ndarray
    dipole_derivatives: np.ndarray | None = None
    polarizability_derivatives: np.ndarray | None = None
    units: dict = field(default_factory=lambda: dict(SPECTRUM_UNITS))

    @property
    def wavenumbers(self) -> np.ndarray:
        """``[M]`` in cm^-1 (``energies / ase.units.invcm``)."""
        return self.energies / units.invcm

    @property
    def ir_intensities(self) -> np.ndarray | None:
        """``[M]`` in km/mol, or None without dipole derivatives."""
        d = self.dipole_derivatives
        return None if d is None else IR_KM_PER_MOL * (d ** 2).sum(axis=1)

    def _raman_invariants(self) -> tuple[np.ndarray, np.ndarray] | None:
        d = self.polarizability_derivatives  # [M, 3, 3]
        if d is None:
            return None
        s = 0.5 * (d + d.transpose(0, 2, 1))  # [M, 3, 3]
        a = np.trace(s, axis1=1, axis2=2) / 3.0  # [M]
        xx, yy, zz = s[:, 0, 0], s[:, 1, 1], s[:, 2, 2]
        g2 = (0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2)
              + 3.0 * (s[:, 0, 1] ** 2 + s[:, 1, 2] ** 2 + s[:, 2, 0] ** 2))  # [M]
        return a ** 2, g2

    @property
    def raman_activities(self) -> np.ndarray | None:
        """``45 a'^2 + 7 g'^2`` ``[M]`` in Angstrom^4/amu, or None without Raman tensors."""
        inv = self._raman_invariants()
        return None if inv is None else 45.0 * inv[0] + 7.0 * inv[1]

    @property
    def depolarization_ratios(self) -> np.ndarray | None:
        """``3 g'^2 / (45 a'^2 + 4 g'^2)`` ``[M]`` (NaN where both vanish), or None."""
        inv = self._raman_invariants()
        if inv is None:
            return None
        den = 45.0 * inv[0] + 4.0 * inv[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, 3.0 * inv[1] / np.where(den > 0, den, 1.0), np.nan)


def harmonic_spectrum(atoms: Atoms, hessian, *, apt=None, raman=None,
                      dipole_unit: str | None = None, polarizability_unit: str | None = None,
                      project: bool = True) -> HarmonicSpectrum:
    """IR intensities and Raman activities of the harmonic modes of ``hessian``.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (positions and masses) at which the Hessian was taken.
    hessian : array ``[3N, 3N]`` or ``[N, 3, N, 3]`` (eV/Angstrom^2), or ase VibrationsData
    apt : array ``[N, 3, 3]``, optional
        ``apt[i, a, b] = d mu_a / d r_(i,b)`` (dipole unit per Angstrom), e.g. from
        :func:`~tsym.runtime.spectra.derivatives` or a Born-charge head.
    raman : array ``[N, 3, 3, 3]``, optional
        ``raman[i, a, b, c] = d alpha_ab / d r_(i,c)`` (polarizability unit per Angstrom).
    dipole_unit, polarizability_unit : str, optional
        Units of the tensors (:mod:`~tsym.runtime.spectra._units`); default e*Angstrom and
        Angstrom^3.
    project : bool
        Project out rigid translations and rotations (default).

    Raises
    ------
    DerivativeError
        A Hessian or tensor of the wrong shape, a non-finite one, or an unknown unit.
    """
    energies, modes = normal_modes(atoms, hessian, project=project)  # [M], [M, N, 3]
    n = len(atoms)
    dmu = dalpha = None
    if apt is not None:
        apt = _checked(apt, (n, 3, 3), "APT")
        dmu = np.einsum("iab,kib->ka", apt, modes) * dipole_factor(dipole_unit)  # [M, 3]
    if raman is not None:
        raman = _checked(raman, (n, 3, 3, 3), "Raman tensor")
        dalpha = (np.einsum("iabc,kic->kab", raman, modes)
                  * polarizability_factor(polarizability_unit))  # [M, 3, 3]
    return HarmonicSpectrum(energies, modes, dmu, dalpha)


def _checked(value, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise DerivativeError(f"the {what}s have shape {arr.shape}: expected {shape} "
                              "(atoms, tensor indices, displacement direction last)")
    if not np.isfinite(arr).all():
        raise DerivativeError(f"the {what}s hold NaN or inf")
    return arr
