"""PySCF labels (dipole, alpha, beta, NMR shielding) and the shipped demo data set.

The shipped-data tests always run (no PySCF needed).  The labelling tests skip without PySCF +
pyscf-properties and use H2O/STO-3G (a few seconds).  Expected values come from physics, not from
the code under test: rotation rules ``R^{(x)n}``, index symmetries, central finite differences of
the dipole in a field added to the core Hamiltonian, molecular point-group symmetry, and
experimental polarizabilities (CRC Handbook).  The labels are float64 by construction (PySCF);
symmetry checks on the shipped data run on the tensors as float64 and as float32, each with its
tolerance.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read, write

from tsym.compiler.errors import TsymError
from tsym.runtime.data.label import PROPERTIES, STORAGE_KEYS, attach_labels, label_molecule

DEMO = Path(__file__).resolve().parents[3] / "runtime" / "data" / "assets" / "demo_molecules.extxyz"
# tolerance (relative to the tensor's largest entry) per dtype, for alpha and beta symmetry
SYM_TOL = {np.float64: (1e-6, 1e-5), np.float32: (1e-5, 1e-5)}
BOHR3_PER_A3 = 1 / 0.529177210903**3


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q  # [3, 3], proper


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-12))


# ----------------------------------------------------------------------------- shipped data
@pytest.fixture(scope="module")
def demo():
    return read(DEMO, index=":")


def test_demo_reads_with_documented_keys_and_shapes(demo):
    assert len(demo) >= 200
    for atoms in demo:
        assert atoms.calc is None  # nothing was swallowed into a SinglePointCalculator
        assert not atoms.pbc.any() and not atoms.cell.array.any()
        assert atoms.info["level_of_theory"] == "RHF/6-31G*"
        assert isinstance(atoms.info["name"], str)
        assert -700 < atoms.info["scf_energy"] < -1  # Hartree, negative, small molecules
        assert np.shape(atoms.info["mu"]) == (3,)
        assert np.shape(atoms.info["polarizability"]) == (9,)
        assert np.shape(atoms.info["hyperpolarizability"]) == (27,)
        assert atoms.arrays["nmr_shielding"].shape == (len(atoms), 9)
        assert set(atoms.get_chemical_symbols()) <= {"H", "C", "N", "O", "F"}
    assert len({a.info["name"] for a in demo}) >= 50


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_demo_tensor_symmetries(demo, dtype):
    tol_a, tol_b = SYM_TOL[dtype]
    for atoms in demo:
        alpha = np.asarray(atoms.info["polarizability"], dtype=dtype).reshape(3, 3)
        beta = np.asarray(atoms.info["hyperpolarizability"], dtype=dtype).reshape(3, 3, 3)
        assert _rel(alpha.T, alpha) < tol_a
        for perm in [(0, 2, 1), (1, 0, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)]:
            assert _rel(beta.transpose(perm), beta) < tol_b
        assert np.linalg.eigvalsh(alpha.astype(np.float64)).min() > 0  # positive definite


# experimental static polarizabilities (CRC Handbook, Angstrom^3); RHF/6-31G* has no diffuse
# functions and underestimates them, so accept 0.4 to 1.1 times experiment
EXPERIMENT_A3 = {"H2O": 1.45, "NH3": 2.26, "CH4": 2.59, "CO2": 2.91, "C6H6": 10.3, "HF": 0.80}


@pytest.mark.parametrize("name", sorted(EXPERIMENT_A3))
def test_demo_isotropic_polarizability_is_plausible(demo, name):
    found = [a for a in demo if a.info["name"] == name]
    assert found, f"{name} missing from the demo set"
    ref = EXPERIMENT_A3[name] * BOHR3_PER_A3
    for atoms in found:
        iso = np.trace(np.reshape(atoms.info["polarizability"], (3, 3))) / 3
        assert 0.4 * ref < iso < 1.1 * ref


def test_demo_frame_is_the_structure_frame(demo):
    """At the G2 geometry (copy 0, randomly rotated) point-group symmetry fixes the tensors."""
    water = next(a for a in demo if a.info["name"] == "H2O" and a.info["copy"] == 0)
    sym = water.get_chemical_symbols()
    o, (h1, h2) = water.positions[sym.index("O")], water.positions[[i for i, s in
                                                                    enumerate(sym) if s == "H"]]
    axis = (h1 + h2) / 2 - o
    axis /= np.linalg.norm(axis)  # C2 axis, pointing from O towards the H atoms
    mu = np.asarray(water.info["mu"])
    assert np.dot(mu, axis) > 0.7  # e*Bohr; RHF/6-31G* gives ~0.8, dipole O(-) -> H(+)
    assert np.linalg.norm(mu - np.dot(mu, axis) * axis) < 1e-6
    alpha = np.reshape(water.info["polarizability"], (3, 3))
    assert np.linalg.norm(alpha @ axis - np.dot(axis, alpha @ axis) * axis) < 1e-6  # eigenvector
    # the C2 rotation maps H1 to H2, so sigma(H2) = C2 sigma(H1) C2^T (not symmetric tensors)
    c2 = 2 * np.outer(axis, axis) - np.eye(3)
    sig = water.arrays["nmr_shielding"].reshape(-1, 3, 3)
    hs = [i for i, s in enumerate(sym) if s == "H"]
    assert _rel(c2 @ sig[hs[0]] @ c2.T, sig[hs[1]]) < 1e-5
    for name in ("CH4", "CO2", "C6H6"):  # centrosymmetric or tetrahedral: no dipole
        atoms = next(a for a in demo if a.info["name"] == name and a.info["copy"] == 0)
        assert np.abs(atoms.info["mu"]).max() < 1e-5


def test_demo_nmr_shieldings_are_plausible(demo):
    for atoms in demo:
        iso = np.trace(atoms.arrays["nmr_shielding"].reshape(-1, 3, 3), axis1=1, axis2=2) / 3
        h = np.asarray(atoms.get_chemical_symbols()) == "H"
        assert np.all((iso[h] > 15) & (iso[h] < 40))  # proton shieldings, ppm


def test_attach_labels_round_trips_through_ase(tmp_path):
    atoms = molecule("NH3")
    rng = np.random.default_rng(0)
    labels = {"energy": np.asarray(-56.2), "dipole": rng.normal(size=3),
              "polarizability": rng.normal(size=(3, 3)),
              "hyperpolarizability": rng.normal(size=(3, 3, 3)),
              "nmr_shielding": rng.normal(size=(4, 3, 3))}
    write(tmp_path / "x.extxyz", attach_labels(atoms, labels, name="NH3"), format="extxyz")
    back = read(tmp_path / "x.extxyz")
    assert back.calc is None and back.info["name"] == "NH3"
    assert back.info[STORAGE_KEYS["energy"]] == -56.2
    for key in PROPERTIES:  # ASE writes per-atom columns with 8 decimals, info keys exactly
        if key == "nmr_shielding":
            np.testing.assert_allclose(back.arrays[key].reshape(4, 3, 3), labels[key], atol=1e-8)
        else:
            stored = back.info[STORAGE_KEYS.get(key, key)]
            np.testing.assert_array_equal(np.reshape(stored, labels[key].shape), labels[key])


def test_missing_pyscf_raises_tsym_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyscf", None)  # makes `import pyscf` raise ImportError
    with pytest.raises(TsymError, match=r"^labelling needs PySCF"):
        label_molecule(molecule("H2"), ("dipole",))


def test_bad_requests_raise_tsym_error():
    with pytest.raises(TsymError, match=r"^unknown property 'quadrupole'"):
        label_molecule(molecule("H2"), ("quadrupole",))
    with pytest.raises(TsymError, match=r"^method 'B3LYP' is not supported"):
        label_molecule(molecule("H2"), ("dipole",), method="B3LYP")


# ----------------------------------------------------------------------------- live PySCF
@pytest.fixture(scope="module")
def pyscf():
    pytest.importorskip("pyscf")
    pytest.importorskip("pyscf.prop.polarizability")
    import pyscf

    return pyscf


def _nmr_works(pyscf) -> bool:
    return tuple(int(x) for x in pyscf.__version__.split(".")[:2]) < (2, 5)


def _water(rotation=None) -> Atoms:
    atoms = molecule("H2O")
    atoms.positions += np.array([0.1, -0.2, 0.3])  # off the origin: neutral, so no effect
    if rotation is not None:
        atoms.positions = atoms.positions @ rotation.T
    return atoms


def test_labels_are_equivariant_and_symmetric(pyscf):
    props = ("dipole", "polarizability", "hyperpolarizability")
    props += ("nmr_shielding",) if _nmr_works(pyscf) else ()
    R = _rotation(3)
    a = label_molecule(_water(), props, basis="sto-3g")
    b = label_molecule(_water(R), props, basis="sto-3g")
    assert abs(a["energy"] - b["energy"]) < 1e-9
    assert _rel(a["polarizability"].T, a["polarizability"]) < 1e-8
    beta = a["hyperpolarizability"]
    for perm in [(0, 2, 1), (1, 0, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)]:
        assert _rel(beta.transpose(perm), beta) < 1e-8
    assert _rel(b["dipole"], R @ a["dipole"]) < 1e-6
    assert _rel(b["polarizability"], R @ a["polarizability"] @ R.T) < 1e-6
    assert _rel(b["hyperpolarizability"], np.einsum("ia,jb,kc,abc->ijk", R, R, R, beta)) < 1e-6
    if "nmr_shielding" in props:
        rot = np.einsum("ia,jb,nab->nij", R, R, a["nmr_shielding"])
        assert _rel(b["nmr_shielding"], rot) < 1e-6


def test_alpha_beta_match_finite_field_dipoles(pyscf):
    """alpha_ij = d mu_i/dE_j, beta_ijk = d^2 mu_i/dE_j dE_k from SCF runs with h + E.r."""
    from pyscf import gto, scf

    atoms = _water(_rotation(5))
    ana = label_molecule(atoms, ("dipole", "polarizability", "hyperpolarizability"),
                         basis="sto-3g", conv_tol=1e-13)
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                unit="Angstrom", basis="sto-3g", verbose=0)
    r_ao = mol.intor_symmetric("int1e_r", comp=3)  # [3, nao, nao]

    def mu(field):
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-13
        hcore = mf.get_hcore() + np.einsum("x,xij->ij", field, r_ao)
        mf.get_hcore = lambda *args, **kwargs: hcore
        mf.kernel()
        return np.asarray(mf.dip_moment(unit="AU", verbose=0))  # [3]

    h, e = 2e-3, np.eye(3) * 2e-3
    mu0 = mu(np.zeros(3))
    alpha, beta = np.zeros((3, 3)), np.zeros((3, 3, 3))
    for j in range(3):
        plus, minus = mu(e[j]), mu(-e[j])
        alpha[:, j] = (plus - minus) / (2 * h)
        beta[:, j, j] = (plus - 2 * mu0 + minus) / h**2
        for k in range(j + 1, 3):
            beta[:, j, k] = beta[:, k, j] = (mu(e[j] + e[k]) - mu(e[j] - e[k]) - mu(e[k] - e[j])
                                             + mu(-e[j] - e[k])) / (4 * h**2)
    assert _rel(ana["dipole"], mu0) < 1e-8
    assert _rel(ana["polarizability"], alpha) < 1e-4  # central differences: O(h^2)
    assert _rel(ana["hyperpolarizability"], beta) < 5e-3


def test_nmr_request_on_new_pyscf_names_the_fix(pyscf):
    if _nmr_works(pyscf):
        pytest.skip("this PySCF computes NMR shielding")
    with pytest.raises(TsymError, match=r"^nmr_shielding is not available with PySCF"):
        label_molecule(_water(), ("nmr_shielding",), basis="sto-3g")


def test_odd_electron_count_is_refused(pyscf):
    with pytest.raises(TsymError, match=r"^HO with charge 0 has 9 electrons"):
        label_molecule(Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.97]]), ("dipole",))


def test_cli_label_writes_labelled_extxyz(pyscf, tmp_path):
    from tsym.cli.label import register

    parser = argparse.ArgumentParser(prog="tsym")
    register(parser.add_subparsers(dest="command", required=True))
    write(tmp_path / "in.extxyz", [molecule("H2"), _water()], format="extxyz")
    args = parser.parse_args(["label", str(tmp_path / "in.extxyz"), "-o", str(tmp_path / "out.xyz"),
                              "--basis", "sto-3g", "--properties", "dipole,polarizability", "-q"])
    assert args.func(args) == 0
    out = read(tmp_path / "out.xyz", index=":")
    assert [len(a) for a in out] == [2, 3]
    assert out[1].info["level_of_theory"] == "RHF/sto-3g"
    assert np.abs(out[0].info["mu"]).max() < 1e-6  # H2 has no dipole
    assert "hyperpolarizability" not in out[0].info
    assert np.trace(np.reshape(out[0].info["polarizability"], (3, 3))) > 0
