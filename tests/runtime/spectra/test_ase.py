"""``tsym.TsymCalculator`` over ASE's EMT: forces from the potential, tensors and their
derivatives from tsym, in ASE's MD and vibrations; ASE's ``Infrared`` as the cross-check.

ASE's ``Infrared`` differentiates the calculator's dipole by the 4-point central difference
(``nfree=4``, truncation error ``~ delta^4``) and diagonalises the unprojected Hessian, so its
intensities of water's three modes agree with the autograd APTs on the projected modes to the
finite-difference error: at step ``delta/2`` it is 1/16 of that at ``delta``, so
``|I(delta) - I(delta/2)|`` bounds it.  The model for this check has a smooth radial basis (3
Bessel functions, one block): an untrained network with 20 has structure on the 0.01 A scale of
the steps, where no finite difference converges (measured: 14% off on water's weakest mode).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.vibrations import Infrared, Vibrations

import tsym

from ._models import BACKBONE, tiny_model


@pytest.fixture(scope="module")
def water():
    atoms = molecule("H2O")
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=1e-6, steps=500)
    atoms.calc = None
    return atoms


def test_results_units_and_base(water):
    model = tiny_model(torch.float64)
    calc = tsym.TsymCalculator(model, base=EMT(), derivatives=True)
    atoms = water.copy()
    atoms.calc = calc
    emt = water.copy()
    emt.calc = EMT()
    np.testing.assert_array_equal(atoms.get_forces(), emt.get_forces())
    assert atoms.get_potential_energy() == emt.get_potential_energy()
    np.testing.assert_array_equal(atoms.get_dipole_moment(), model.predict(atoms)["dipole"][0])
    grads = tsym.derivatives(model, atoms)
    np.testing.assert_array_equal(calc.get_property("dipole_derivatives", atoms), grads["dipole"])
    assert calc.get_property("polarizability_derivatives", atoms).shape == (3, 3, 3, 3)
    assert calc.units["forces"] == "eV/Angstrom" and calc.units["dipole"] == "e*Angstrom"
    assert calc.units["polarizability"] == "Bohr^3"
    assert calc.units["polarizability_derivatives"] == "(Bohr^3)/Angstrom"
    assert {"energy", "forces", "dipole", "polarizability_derivatives"} <= set(
        calc.implemented_properties)


def test_md_on_the_combined_calculator(water):
    model = tiny_model(torch.float64)
    atoms = water.copy()
    atoms.rattle(0.02, seed=3)
    atoms.calc = tsym.TsymCalculator(model, base=EMT())
    dipoles = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.attach(lambda: dipoles.append(atoms.get_dipole_moment().copy()), interval=1)
    e0 = atoms.get_total_energy()
    dyn.run(5)
    assert len(dipoles) == 6 and not np.allclose(dipoles[0], dipoles[-1])
    np.testing.assert_array_equal(dipoles[-1], model.predict(atoms)["dipole"][0])
    assert abs(atoms.get_total_energy() - e0) < 1e-3  # EMT's dynamics, untouched


def test_ase_infrared_agrees_with_autograd_apts(water, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model(torch.float64, backbone_kwargs=dict(BACKBONE, num_basis=3, num_blocks=1))
    results = {}
    for delta in (0.01, 0.005):
        atoms = water.copy()
        atoms.calc = tsym.TsymCalculator(model, base=EMT())
        ir = Infrared(atoms, name=f"ir{delta}", nfree=4, delta=delta)
        ir.run()
        ir.read()
        results[delta] = (ir, ir.intensities[-3:])  # (D/A)^2/amu, the three vibrations
    ir4 = results[0.005][0]
    spec = tsym.model_spectrum(model, water, ir4.get_vibrations(), dipole="dipole")
    ours = (spec.dipole_derivatives ** 2).sum(axis=1) / units.Debye ** 2  # (D/A)^2/amu
    bound = np.abs(results[0.01][1] - results[0.005][1]).max()
    assert bound < 1e-4 * ours.max()  # the check has teeth
    np.testing.assert_allclose(ours, results[0.005][1], atol=bound, rtol=0)
    # the same Hessian; ASE keeps the rigid motions in, we project them out
    np.testing.assert_allclose(spec.wavenumbers, ir4.get_frequencies()[-3:].real, rtol=1e-6)
    # ASE's km/mol uses 42.255 per (D/A)^2/amu (Porezag), ours the SI constants
    np.testing.assert_allclose(spec.ir_intensities, 42.255 * ours, rtol=1e-4)


def test_model_spectrum_refuses_missing_heads(water):
    model = tiny_model(torch.float64)
    hessian = np.eye(9)
    with pytest.raises(tsym.TsymError, match=r"^the model has no head 'born_charges' for the "
                                             r"apt"):
        tsym.model_spectrum(model, water, hessian, apt="born_charges")
    with pytest.raises(tsym.TsymError, match=r"^head 'polarizability' is a rank-2 "
                                             r"structure-level tensor; the dipole needs"):
        tsym.model_spectrum(model, water, hessian, dipole="polarizability")
    with pytest.raises(tsym.TsymError, match=r"^name a dipole, polarizability or apt head"):
        tsym.model_spectrum(model, water, hessian)


def test_depolarisation_ratio_follows_symmetry(water, tmp_path, monkeypatch):
    """Water (C2v): the antisymmetric stretch (b2) changes no invariant of the polarizability,
    so a' = 0 and rho = 3/4 exactly (group theory); the two a1 modes are polarised (rho < 3/4).
    An exactly equivariant model keeps this whatever its weights; the only error is the finite-
    difference Hessian's asymmetry (~1e-9 of its entries), far below 1e-6."""
    monkeypatch.chdir(tmp_path)
    model = tiny_model(torch.float64)
    atoms = water.copy()
    atoms.calc = EMT()
    vib = Vibrations(atoms, name="vib")
    vib.run()
    spec = tsym.model_spectrum(model, water, vib.get_vibrations(),
                               polarizability="polarizability")
    rho = spec.depolarization_ratios
    assert np.sum(np.abs(rho - 0.75) < 1e-6) == 1
    assert np.sum(rho < 0.75 - 1e-3) == 2


def test_calculator_refuses_unknown_derivative_heads():
    model = tiny_model(torch.float64)
    with pytest.raises(tsym.TsymError, match=r"^the model has no head 'alpha' \(heads: "):
        tsym.TsymCalculator(model, derivatives=["alpha"])
    assert tsym.derivatives(model, [])["dipole"].shape == (0, 3, 3)


def test_spectrum_is_invariant_under_rotation_and_reflection(water):
    """Rotating-reflecting the molecule and its Hessian leaves every mode's wavenumber, IR
    intensity, Raman activity and depolarisation ratio as they were (1e-10: float64 rounding
    of the model, ~1e-15, and of 9x9 eigensolvers)."""
    from ._models import orthogonal
    model = tiny_model(torch.float64)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(9, 9))
    hessian = a @ a.T + 9 * np.eye(9)  # eV/A^2, positive: every mode real
    q = orthogonal(2)
    big = np.kron(np.eye(3), q)  # q on each atom's block
    moved = water.copy()
    moved.positions = water.positions @ q.T
    kw = dict(dipole="dipole", polarizability="polarizability")
    s0 = tsym.model_spectrum(model, water, hessian, **kw)
    s1 = tsym.model_spectrum(model, moved, big @ hessian @ big.T, **kw)
    for attr in ("wavenumbers", "ir_intensities", "raman_activities", "depolarization_ratios"):
        np.testing.assert_allclose(getattr(s1, attr), getattr(s0, attr), rtol=1e-10)
