"""Harmonic spectra against closed forms: point charges on springs, a bond-polarizability model.

Expected values are derived here from the model's physics with scipy's CODATA constants (not
``ase.units``, which the code uses): a diatomic ``+q/-q`` on a spring ``k`` has one mode,
``omega = sqrt(k / mu)``, with ``|dmu/dQ|^2 = q^2 / mu``; a linear ``-q, 2q, -q`` triatomic has an
IR-silent symmetric stretch (``omega^2 = k / m_O``) and an asymmetric one (``omega^2 = k (1/m_O +
2/m_C)``, ``|dmu/dQ|^2 = 2 q^2 (m_C + 2 m_O) / (m_O m_C)``).  The IR intensity is
``N_A pi / (3 c^2 4 pi eps0) |dmu/dQ|^2``.  A diatomic whose polarizability is
``alpha1 (d - d0) I + gamma1 (d - d0) (u u^T - I/3)`` has ``a' = alpha1 / sqrt(mu)``,
``g'^2 = gamma1^2 / mu``: activity ``(45 alpha1^2 + 7 gamma1^2) / mu`` and depolarisation ratio
``3 gamma1^2 / (45 alpha1^2 + 4 gamma1^2)``.  Tolerances: where only the code's arithmetic
enters (Raman activities, unit-free ratios, ASE's own modes), 1e-10 relative (float64
eigensolvers on 6x6-9x9 matrices of O(1) entries, ~1e-14); where physical constants enter, 1e-7:
ASE uses CODATA 2014 and scipy CODATA 2022, whose amu, e and eps0 differ by up to ~2e-8 relative
(measured: the IR intensities of these cases differ by 1.7e-8).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.constants as sc
from ase import Atoms
from ase.vibrations import Vibrations, VibrationsData

from tsym.runtime.spectra import (DerivativeError, broaden, harmonic_spectrum, normal_modes,
                                  plot_spectrum, write_csv)

KM_PER_MOL = sc.N_A * math.pi / (3 * sc.c ** 2) / (4 * math.pi * sc.epsilon_0) * sc.e ** 2 \
    / sc.atomic_mass / 1000.0  # per e^2/amu


def _wavenumber(k_ev_a2: float, mu_amu: float) -> float:
    omega = math.sqrt(k_ev_a2 * sc.e / 1e-20 / (mu_amu * sc.atomic_mass))  # rad/s
    return omega / (2 * math.pi * sc.c * 100)  # cm^-1


def _stretch_hessian(n: int, bonds, k: float) -> np.ndarray:
    """Springs along z between atoms on the z axis: ``[3n, 3n]`` eV/A^2."""
    h = np.zeros((3 * n, 3 * n))
    for i, j in bonds:
        zi, zj = 3 * i + 2, 3 * j + 2
        h[zi, zi] += k
        h[zj, zj] += k
        h[zi, zj] -= k
        h[zj, zi] -= k
    return h


def test_diatomic_point_charges_ir():
    q, k = 0.37, 11.0
    co = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    m1, m2 = co.get_masses()
    mu = m1 * m2 / (m1 + m2)
    apt = np.array([q * np.eye(3), -q * np.eye(3)])  # mu = q r_C - q r_O
    spec = harmonic_spectrum(co, _stretch_hessian(2, [(0, 1)], k), apt=apt)
    assert spec.wavenumbers.shape == (1,)  # 3N - 5
    assert spec.wavenumbers[0] == pytest.approx(_wavenumber(k, mu), rel=1e-7)
    assert spec.ir_intensities[0] == pytest.approx(KM_PER_MOL * q ** 2 / mu, rel=1e-7)
    assert spec.units["ir_intensities"] == "km/mol"
    # the same in Debye: the intensity scales with the unit squared
    in_debye = harmonic_spectrum(co, _stretch_hessian(2, [(0, 1)], k), apt=apt / 0.2081943,
                                 dipole_unit="Debye")
    assert in_debye.ir_intensities[0] == pytest.approx(spec.ir_intensities[0], rel=1e-6)


def test_linear_triatomic_point_charges():
    q, k = 0.5, 16.0
    co2 = Atoms("OCO", positions=[[0, 0, -1.16], [0, 0, 0], [0, 0, 1.16]])
    m_o, m_c = co2.get_masses()[:2]
    apt = np.array([-q * np.eye(3), 2 * q * np.eye(3), -q * np.eye(3)])
    spec = harmonic_spectrum(co2, _stretch_hessian(3, [(0, 1), (1, 2)], k), apt=apt)
    nu, ir = spec.wavenumbers, spec.ir_intensities
    assert nu.shape == (4,)  # 3N - 5: two bends (no bending spring: zero), two stretches
    np.testing.assert_allclose(nu[:2], 0.0, atol=1e-4)
    assert nu[2] == pytest.approx(_wavenumber(k, m_o), rel=1e-7)  # symmetric stretch
    assert ir[2] <= 1e-12 * ir[3]  # IR silent
    assert nu[3] == pytest.approx(_wavenumber(k * (1 + 2 * m_o / m_c), m_o), rel=1e-7)
    want = KM_PER_MOL * 2 * q ** 2 * (m_c + 2 * m_o) / (m_o * m_c)
    assert ir[3] == pytest.approx(want, rel=1e-7)


def test_diatomic_bond_polarizability_raman():
    alpha1, gamma1, k = 1.3, 0.8, 9.0
    n2 = Atoms("NO", positions=[[0.1, -0.2, 0.3], [0.1, -0.2, 1.4]])
    u = np.array([0.0, 0.0, 1.0])
    m1, m2 = n2.get_masses()
    mu = m1 * m2 / (m1 + m2)
    dalpha_dd = alpha1 * np.eye(3) + gamma1 * (np.outer(u, u) - np.eye(3) / 3)  # [3, 3]
    raman = np.array([np.einsum("ab,c->abc", dalpha_dd, -u), np.einsum("ab,c->abc", dalpha_dd, u)])
    spec = harmonic_spectrum(n2, _stretch_hessian(2, [(0, 1)], k), raman=raman)
    assert spec.ir_intensities is None
    want = (45 * alpha1 ** 2 + 7 * gamma1 ** 2) / mu
    assert spec.raman_activities[0] == pytest.approx(want, rel=1e-10)
    rho = 3 * gamma1 ** 2 / (45 * alpha1 ** 2 + 4 * gamma1 ** 2)
    assert spec.depolarization_ratios[0] == pytest.approx(rho, rel=1e-10)


def test_projection_and_ase_modes_agree():
    """Water on random positive springs: 3N-6 modes; with rigid motions already absent from
    the Hessian, they are ASE's VibrationsData non-zero modes."""
    from ase.build import molecule
    water = molecule("H2O")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 9))
    h = a @ a.T
    # remove the rigid motions exactly (the projector in Cartesian, mass-weighted form)
    from tsym.runtime.spectra import rigid_body_basis
    b = rigid_body_basis(water)  # [9, 6]
    sqrt_m = np.repeat(np.sqrt(water.get_masses()), 3)
    p = np.eye(9) - b @ b.T
    h = (sqrt_m[:, None] * (p @ (h / 100) @ p)) * sqrt_m[None, :]
    energies, modes = normal_modes(water, h)
    assert energies.shape == (3,) and modes.shape == (3, 3, 3)
    ase_e, _ = VibrationsData.from_2d(water, h).get_energies_and_modes()
    np.testing.assert_allclose(energies, np.sort(ase_e.real)[-3:], rtol=1e-10)


def test_bad_inputs_refused():
    co = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    with pytest.raises(DerivativeError, match=r"^a Hessian of shape \(5, 5\) for 2 atoms: "
                                              r"expected \(6, 6\) or \(2, 3, 2, 3\)"):
        harmonic_spectrum(co, np.eye(5))
    with pytest.raises(DerivativeError, match=r"^the APTs have shape \(3, 3, 3\): expected"):
        harmonic_spectrum(co, np.eye(6), apt=np.zeros((3, 3, 3)))
    with pytest.raises(DerivativeError, match=r"^unknown dipole unit 'furlong'"):
        harmonic_spectrum(co, np.eye(6), apt=np.zeros((2, 3, 3)), dipole_unit="furlong")
    with pytest.raises(DerivativeError, match=r"^the Hessian holds NaN"):
        harmonic_spectrum(co, np.full((6, 6), np.nan))


@pytest.mark.parametrize("shape", ["lorentzian", "gaussian"])
def test_broadening_is_ase_fold(shape):
    nu, s = np.array([500.0, 1210.5, 1600.0]), np.array([3.0, 1.0, 0.5])
    grid, ase_curve = Vibrations.fold(None, nu, s, start=0, end=2000, npts=2001, width=12.0,
                                      type=shape.capitalize(), normalize=True)
    ours = broaden(nu, s, grid, 12.0, shape)
    np.testing.assert_allclose(ours, ase_curve, rtol=1e-12, atol=1e-15)
    assert np.trapezoid(ours, grid) == pytest.approx(s.sum(), rel=0.02)  # area = strength


def test_csv_and_png(tmp_path):
    co = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    apt = np.array([0.3 * np.eye(3), -0.3 * np.eye(3)])
    raman = np.zeros((2, 3, 3, 3))
    raman[0, 2, 2, 2], raman[1, 2, 2, 2] = -1.0, 1.0
    spec = harmonic_spectrum(co, _stretch_hessian(2, [(0, 1)], 11.0), apt=apt, raman=raman)
    curve, modes = write_csv(spec, tmp_path / "s.csv", width=20.0)
    rows = np.loadtxt(curve, delimiter=",", skiprows=1)
    assert rows.shape[1] == 3 and rows[np.argmax(rows[:, 1]), 0] == pytest.approx(
        spec.wavenumbers[0], abs=1.0)  # the IR curve peaks at the mode
    table = np.loadtxt(modes, delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_allclose(table[0, 1:], [spec.wavenumbers[0], spec.ir_intensities[0],
                                              spec.raman_activities[0],
                                              spec.depolarization_ratios[0]], rtol=1e-6)
    png = plot_spectrum(spec, tmp_path / "s.png", width=20.0)
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ["_derivatives", "_units", "_harmonic", "_model", "_output",
                                  "_trajectory"])
def test_docstring_examples(name):
    """The examples in the subpackage's private modules (tests/test_doctests.py reads the
    top-level modules of tsym.runtime only)."""
    import doctest
    import importlib
    module = importlib.import_module(f"tsym.runtime.spectra.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
