"""The harmonic pipeline against PySCF: water at RHF/STO-3G.

PySCF gives the analytic Hessian (``pyscf.hessian.rhf``) and, by central finite differences of
the SCF dipole (step 1e-3 Bohr, SCF converged to a gradient of 1e-10), the APTs; PySCF 2.x has
no IR-intensity routine (``pyscf.hessian.thermo.harmonic_analysis`` ends in "TODO: IR intensity",
and pyscf-properties' ``pyscf.prop.infrared`` is not in the ``label`` extra). Both go into
:func:`tsym.harmonic_spectrum` (eV/Angstrom^2 and e, through ``ase.units``), and are compared with

* the wavenumbers of ``pyscf.hessian.thermo.harmonic_analysis`` on the same Hessian and masses
  (its own projection and constants, ``pyscf.data.nist``), and
* the IR intensities of PySCF's normal modes (``norm_mode``: the unit eigenvectors of its
  projected mass-weighted Hessian times ``m^-1/2``, amu^-1/2) contracted with the same APTs, in
  km/mol from ``scipy.constants`` (``N_A pi / (3 c^2) e^2 / (4 pi eps0 amu)``).

The two sides share the input arrays, so what is tested is the pipeline: the unit conversions,
the projection of the rigid motions and the contraction. The constants come from three CODATA
tables (``ase.units`` 2014, ``pyscf.data.nist``, ``scipy.constants``), which differ by ~1e-8
relative; the 9x9 eigenproblems lose ~1e-13. Tolerance 1e-6 relative (measured: 1.5e-9 on the
wavenumbers, 1.7e-8 on the intensities, the km/mol factors' own difference). The
finite-difference APTs themselves are checked by the sum rule of a neutral molecule,
``sum_i P_i = 0``, to their truncation error (``h^2 / 6 mu''' ~ 1e-7``) plus SCF noise
(``1e-10 / 2h``): 1e-5 (measured 1.7e-7).
"""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units

import tsym

pyscf = pytest.importorskip(
    "pyscf", reason='PySCF is not installed: pip install -c constraints.txt -e ".[label]"')
from pyscf import gto, scf  # noqa: E402
from pyscf.hessian import thermo  # noqa: E402

STEP = 1e-3  # Bohr
#: water near its RHF/STO-3G minimum, Angstrom (the pipeline needs no exact minimum: both sides
#: project the same rigid motions out of the same Hessian)
WATER = Atoms("OHH", positions=[[0.0, 0.0, 0.1271], [0.0, 0.7580, -0.5085],
                                [0.0, -0.7580, -0.5085]])


def _scf(coords_bohr):
    mol = gto.M(atom=[(s, c) for s, c in zip(WATER.get_chemical_symbols(), coords_bohr)],
                basis="sto-3g", unit="Bohr", verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol, mf.conv_tol_grad = 1e-13, 1e-10
    mf.kernel()
    assert mf.converged
    return mf


def _apt(coords_bohr) -> np.ndarray:
    """``[N, 3, 3]``: ``P[i, a, b] = d mu_a / d r_(i,b)`` in e (e*Bohr / Bohr), central
    differences of the SCF dipole."""
    apt = np.zeros((len(coords_bohr), 3, 3))
    for i in range(len(coords_bohr)):
        for b in range(3):
            mus = []
            for sign in (1, -1):
                x = coords_bohr.copy()
                x[i, b] += sign * STEP
                mus.append(_scf(x).dip_moment(unit="AU", verbose=0))  # [3] e*Bohr
            apt[i, :, b] = (mus[0] - mus[1]) / (2 * STEP)
    return apt


@pytest.fixture(scope="module")
def reference():
    coords = WATER.positions / units.Bohr  # [N, 3] Bohr
    mf = _scf(coords)
    hess_au = mf.Hessian().kernel()  # [N, N, 3, 3] Hartree/Bohr^2
    return mf, hess_au, _apt(coords)


def test_apt_sum_rule(reference):
    _, _, apt = reference
    assert np.abs(apt.sum(axis=0)).max() < 1e-5  # neutral: translations move no dipole
    assert np.abs(apt).max() > 0.1


def test_wavenumbers_and_ir_intensities_match_pyscf(reference):
    from scipy import constants as c

    mf, hess_au, apt = reference
    masses = WATER.get_masses()  # ASE's, given to PySCF too: one mass table for both
    n = len(WATER)
    hess = hess_au.transpose(0, 2, 1, 3) * units.Hartree / units.Bohr ** 2  # [N, 3, N, 3] eV/A^2
    spec = tsym.harmonic_spectrum(WATER, hess, apt=apt)  # apt in e = (e*A)/A

    ref = thermo.harmonic_analysis(mf.mol, hess_au, mass=masses)
    ref_nu = np.asarray(ref["freq_wavenumber"]).real  # [3] cm^-1, ascending
    assert len(ref_nu) == len(spec.wavenumbers) == 3 * n - 6
    np.testing.assert_allclose(spec.wavenumbers, ref_nu, rtol=1e-6)
    assert 1500 < ref_nu[0] < 2500 and ref_nu[-1] > 3500  # bend, then two stretches

    modes = np.asarray(ref["norm_mode"])  # [M, N, 3]: Cartesian per unit normal coordinate
    dmu_dq = np.einsum("iab,kib->ka", apt, modes)  # [M, 3] e / amu^(1/2)
    km_per_mol = (c.N_A * np.pi / (3 * c.c ** 2) * c.e ** 2 / (4 * np.pi * c.epsilon_0)
                  / c.atomic_mass / 1000.0)
    ref_ir = km_per_mol * (dmu_dq ** 2).sum(axis=1)  # [M] km/mol
    np.testing.assert_allclose(spec.ir_intensities, ref_ir, rtol=1e-6)
    assert ref_ir.min() > 1.0  # every mode of water is IR active
