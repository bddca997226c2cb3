"""Converters: small hand-written sources (always), the shared public data (when present).

Shared-data tests find the files only through ``TSYM_SHARED_DATA`` and read subsets.  Crystal
tensors are checked for point-group invariance with spglib directly (``_invariance`` below, not the
package's helper).  IEEE-frame tests build structures in a known frame, rotate them by a known
``Q``, and expect ``T_structure = Q . T_ieee`` on every index.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import re
import warnings

import ase.io
import numpy as np
import pytest
import torch
import spglib
from ase import Atoms

from tsym.cli.data import register
from tsym.compiler import compile_file, compile_text
from tsym.runtime.errors import DataError
from tsym.runtime.equivariance import rotate_cartesian
from tsym.runtime.data.crystal import (atoms_from_pymatgen, ieee_candidates, ieee_rotation,
                                       max_operation_deviation, site_symmetry_deviation,
                                       symmetry_ops)
from tsym.runtime.data.convert import (BOHR_IN_ANGSTROM, CONVERTERS, convert, convert_water_apt,
                                       convert_water_sagpr, write_extxyz)
from tsym.runtime.data.convert.common import LABEL_SPECS, LIBRARY, label_plan
from tsym.runtime.data import LabelSpec, read_dataset, voigt_to_tensor3
from tsym.runtime.data.records import symmetry_deviation

from ...conftest import SHARED_DATA_SKIP, SPECS_DIR, shared_data_dir

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason=SHARED_DATA_SKIP)


def rodrigues(axis, angle) -> np.ndarray:
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


Q = rodrigues([1, 2, 3], 0.7)


def q_rotate(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``q`` on every index of a rank-3 tensor, by an explicit einsum."""
    return np.einsum("ia,jb,kc,abc->ijk", q, q, q, t)


def _invariance(atoms, t, symprec=1e-2) -> float:
    """max_g |g T - T| / |T| with spglib's rotations made Cartesian (R = L^T W L^-T)."""
    lattice = np.asarray(atoms.cell)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry_dataset((lattice, atoms.get_scaled_positions(), atoms.numbers),
                                         symprec=symprec)
    letters = "abcd"[: t.ndim]
    spec = ",".join(f"{o}{i}" for o, i in zip("ijkl", letters)) + f",{letters}->{'ijkl'[:t.ndim]}"
    worst = 0.0
    for w in ds.rotations:
        r = lattice.T @ w @ np.linalg.inv(lattice.T)
        worst = max(worst, np.linalg.norm(np.einsum(spec, *([r] * t.ndim), t) - t))
    return worst / np.linalg.norm(t)


# ------------------------------------------------------------------------ symmetry helpers
def test_label_specs_are_the_spec_library_s():
    """Each label key's spec compiles to the library file's irreps, level, units and basis."""
    for key in LABEL_SPECS:
        plan = label_plan(key)
        (library,) = compile_file(SPECS_DIR / f"{LIBRARY.get(key, key)}.tsym")
        assert (plan.irreps, plan.level, plan.pool, plan.units, plan.group_order) == (
            library.irreps, library.level, library.pool, library.units, library.group_order), key
        assert torch.equal(plan.change_of_basis, library.change_of_basis), key


def test_index_symmetry_deviation_is_antisymmetric_share():
    s = np.diag([3.0, 4.0, 12.0])
    a = np.array([[0, 1.0, 0], [-1.0, 0, 0], [0, 0, 0]])
    dev = symmetry_deviation(label_plan("polarizability"), np.stack([s + a]), None)
    np.testing.assert_allclose(dev, np.sqrt(2) / np.sqrt(169 + 2), rtol=1e-14)
    assert symmetry_deviation(label_plan("polarizability"), np.stack([s]), None) < 1e-15


def _perovskite() -> Atoms:  # P4mm, c polar
    frac = [[0, 0, 0], [.5, .5, .54], [.5, .5, .1], [.5, 0, .61], [0, .5, .61]]
    return Atoms("PbTiO3", scaled_positions=frac, cell=np.diag([3.9, 3.9, 4.15]), pbc=True)


def _rotated(atoms: Atoms, q: np.ndarray) -> Atoms:
    return Atoms(atoms.numbers, positions=atoms.positions @ q.T, cell=atoms.cell[:] @ q.T,
                 pbc=True)


def _mm2(lengths) -> Atoms:  # Pmm2, the 2-fold axis along c
    frac = [[0, 0, 0], [.5, .5, .45], [0, .5, .6], [.5, 0, .2]]
    return Atoms("AlBCN", scaled_positions=frac, cell=np.diag(lengths), pbc=True)


E_4MM = np.array([[0, 0, 0, 0, 2.0, 0], [0, 0, 0, 2.0, 0, 0], [-1.0, -1.0, 3.0, 0, 0, 0]])
E_MM2 = np.array([[0, 0, 0, 0, 4.0, 0], [0, 0, 0, 5.0, 0, 0], [1.0, -2.0, 3.0, 0, 0, 0]])


@pytest.mark.parametrize("atoms, voigt", [(_perovskite(), E_4MM), (_mm2([4, 5, 3.]), E_MM2)],
                         ids=["tetragonal-4mm", "orthorhombic-mm2-c-shortest"])
def test_ieee_rotation_recovers_a_known_frame(atoms, voigt):
    ieee = voigt_to_tensor3(voigt)
    rotated = _rotated(atoms, Q)
    ops = symmetry_ops(rotated)
    r = ieee_rotation(rotated, ops)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(rotate_cartesian(ieee, r.T), q_rotate(ieee, Q), atol=1e-9)
    assert max_operation_deviation(rotate_cartesian(ieee, r.T), ops) < 1e-9
    assert _invariance(rotated, rotate_cartesian(ieee, r.T)) < 1e-9


def test_ieee_length_rule_misses_a_long_polar_axis_and_conventional_frame_fixes_it():
    """c (polar, 4 A) between a (3 A) and b (5 A): pymatgen's c < a < b rule puts x3 along a."""
    rotated = _rotated(_mm2([3, 5, 4.]), Q)
    ops = symmetry_ops(rotated)
    ieee = voigt_to_tensor3(E_MM2)
    frames = dict(ieee_candidates(rotated, ops))
    assert max_operation_deviation(rotate_cartesian(ieee, frames["pymatgen"].T), ops) > 0.1
    np.testing.assert_allclose(rotate_cartesian(ieee, frames["conventional_abc"].T), q_rotate(ieee, Q),
                               atol=1e-9)


def test_invariance_helpers_flag_a_broken_tensor():
    atoms = _perovskite()
    ops = symmetry_ops(atoms)
    good = voigt_to_tensor3(E_4MM)
    broken = good.copy()
    broken[0, 0, 0] = 1.0  # e11 is forbidden in 4mm
    assert max_operation_deviation(good, ops) < 1e-12
    assert max_operation_deviation(broken, ops) > 0.1
    z = np.stack([np.diag([1.0, 1.0, 2.0])] * len(atoms))  # same z* on every atom, 4mm-invariant
    assert site_symmetry_deviation(z, ops)[0] < 1e-12
    z[3, 0, 1] = 0.5  # an O atom whose image under the 4-fold axis keeps the old tensor
    assert site_symmetry_deviation(z, ops)[0] > 0.1


def test_atoms_from_pymatgen_dict():
    d = {"lattice": {"matrix": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]},
         "sites": [{"species": [{"element": "Na", "occu": 1}], "abc": [0, 0, 0]},
                   {"species": [{"element": "Cl", "occu": 1}], "abc": [0.5, 0.5, 0.5],
                    "xyz": [2.0, 2.0, 2.0]}]}
    atoms = atoms_from_pymatgen(d)
    assert atoms.get_chemical_symbols() == ["Na", "Cl"] and atoms.pbc.all()
    np.testing.assert_array_equal(atoms.positions, [[0, 0, 0], [2, 2, 2]])
    d["sites"][1]["species"] = [{"element": "Cl", "occu": 0.5}, {"element": "Br", "occu": 0.5}]
    with pytest.raises(ValueError, match="site 1 is disordered"):
        atoms_from_pymatgen(d)


# ------------------------------------------------------------------ hand-written source files
GAS_HEADER = ('Lattice="0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0" Properties="species:S:1:pos:R:3" '
              'potential="-76.3" mu="-0.5 0.0 0.25 " '
              'alpha="9.0 0.0 0.5 0.0 10.0 0.0 0.5 0.0 8.0 " beta=""')
BULK_HEADER = ('Lattice="9.0 0 0 0 9.0 0 0 0 9.0" Properties="species:S:1:pos:R:3" potential="" '
               'mu="  1.0e+00    2.0e+00    3.0e+00 " '
               'epsilon="1.5 0.0 0.0 0.0 1.5 0.0 0.0 0.0 1.5"')
SAGPR = (f"3\n{GAS_HEADER}\nO 0.0 0.0 0.0\nH 0.75 0.5 0.0\nH -0.75 0.5 0.0\n"
         f"3\n{BULK_HEADER}\nO 1.0 1.0 1.0\nH 1.75 1.5 1.0\nH 0.25 1.5 1.0\n")


def test_water_sagpr_parser_fixes_lattice_and_padded_values(tmp_path):
    src = tmp_path / "w.xyz"
    src.write_text(SAGPR)
    frames, report = convert_water_sagpr(src)
    assert report.n_read == report.n_written == 2 and report.n_dropped == 0
    gas, bulk = frames
    assert not gas.pbc.any() and bulk.pbc.all()
    np.testing.assert_allclose(gas.info["mu"], np.array([-0.5, 0.0, 0.25]) * 0.529177210903)
    np.testing.assert_array_equal(gas.info["polarizability"], [9, 0, .5, 0, 10, 0, .5, 0, 8])
    assert "hyperpolarizability" not in gas.info  # beta="" is absent, not zero
    np.testing.assert_allclose(bulk.info["mu"], np.array([1.0, 2.0, 3.0]) * BOHR_IN_ANGSTROM)
    np.testing.assert_array_equal(bulk.info["dielectric"], np.eye(3).reshape(9) * 1.5)
    assert report.checks["labels_present"] == {"mu": 2, "polarizability": 1, "dielectric": 1}
    out = tmp_path / "w.extxyz"
    write_extxyz(out, frames)
    ds = read_dataset(out, [LabelSpec("dipole", "mu")])
    np.testing.assert_allclose(ds[1].labels["dipole"], [0.529177210903 * k for k in (1, 2, 3)])


APT = """2
  fmt='p:a'
O 0.0 0.0 0.0 -1.0 0.1 0.0 0.0 -1.0 0.0 0.0 0.0 -1.5
H 0.9 0.0 0.0 0.5 0.0 0.0 0.0 0.5 0.0 0.0 0.0 0.75
"""


def test_water_apt_parser(tmp_path):
    src = tmp_path / "apt.xyz"
    src.write_text(APT * 2)
    with pytest.warns(UserWarning, match="isolated clusters"):  # a liquid without its box
        frames, report = convert_water_apt(src)
    assert report.n_written == 2 and not frames[0].pbc.any()
    np.testing.assert_array_equal(frames[0].arrays["born_charges"][0],
                                  [-1.0, 0.1, 0, 0, -1.0, 0, 0, 0, -1.5])
    # sum rule: Z_O + Z_H = [[-0.5, 0.1, 0], [0, -0.5, 0], [0, 0, -0.75]] -> max |.| = 0.75
    assert report.checks["born_charge_sum_rule_max_abs"] == pytest.approx(0.75)
    periodic, _ = convert_water_apt(src, cell=10.0)
    np.testing.assert_array_equal(periodic[0].cell[:], np.eye(3) * 10.0)
    assert periodic[0].pbc.all()
    src.write_text(APT.replace(" 0.75\n", "\n"))
    frames, report = convert_water_apt(src)
    assert report.n_written == 0 and list(report.dropped) == ["unreadable frame"]


ZNS_POSCAR = """ZnS
1.0
0.0 2.7 2.7
2.7 0.0 2.7
2.7 2.7 0.0
Zn S
1 1
direct
0.0 0.0 0.0 Zn
0.25 0.25 0.25 S
"""


def test_matminer_csv_realigns_the_shifted_columns(tmp_path):
    header = ["idx", "eij_max", "meta", "piezoelectric_tensor", "v_max", "structure", "poscar",
              "formula", "volume", "space_group", "point_group", "nsites", "material_id"]
    e = np.zeros((3, 6))
    e[0, 3] = e[1, 4] = e[2, 5] = 0.5  # e14 = e25 = e36: -43m in cubic axes
    row = ["0", "0", "0.3", "{}", json.dumps(e.tolist()), "[1.0, 1.0, 1.0]", "a CIF", ZNS_POSCAR,
           "ZnS", "39.4", "216.0", "-43m", "2.0", "mp-test"]
    src = tmp_path / "piezo.csv"
    with open(src, "w", newline="") as fh:
        fh.write("# ref: a comment line\n")
        csv.writer(fh).writerows([header, row])
    frames, report = convert("piezo_mp_matminer", src)
    assert report.n_written == 1 and frames[0].info["material_id"] == "mp-test"
    assert frames[0].info["ieee_frame"] == "pymatgen"
    assert any("one field more than its header" in n for n in report.notes)
    # The POSCAR is written in cubic axes, so the IEEE frame (a, b, c of the conventional cell) is
    # a signed permutation of x, y, z: |e_ijk| = 0.5 for i, j, k all different, 0 otherwise.  The
    # sign of e14 is not fixed: spglib's conventional cell here is turned by 90 degrees about x,
    # a rotation outside -43m that maps the group onto itself and flips e14 (invariance holds
    # either way; see the converter's note).
    t = frames[0].info["piezoelectric"].reshape(3, 3, 3)
    expected = np.zeros((3, 3, 3))
    for p in itertools.permutations(range(3)):
        expected[p] = 0.5
    np.testing.assert_allclose(np.abs(t), expected, atol=1e-12)
    assert _invariance(frames[0], t) < 1e-12


def test_convert_errors_and_registry(tmp_path):
    assert {"becs_epsilon_e3nn", "elastic_matten", "nmr_si_matten", "water_sagpr",
            "qm9_alpha_slice", "piezo_mp_matminer", "water_apt", "abo3_piezo"} <= set(CONVERTERS)
    with pytest.raises(DataError, match=r"^x.json: unknown source kind 'nope'"):
        convert("nope", "x.json")
    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match="^" + re.escape(f"{missing}: no such file")):
        convert("elastic_matten", missing)


def _cli(argv):
    parser = argparse.ArgumentParser(prog="tsym")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_convert_then_check(tmp_path, capsys):
    src, out, rep = tmp_path / "w.xyz", tmp_path / "w.extxyz", tmp_path / "r.json"
    src.write_text(SAGPR)
    assert _cli(["data", "convert", "water_sagpr", str(src), "-o", str(out),
                 "--report", str(rep)]) == 0
    assert "read 2, wrote 2, dropped 0" in capsys.readouterr().out
    assert json.loads(rep.read_text())["n_written"] == 2
    spec = tmp_path / "alpha.tsym"
    spec.write_text("tensor polarizability { indices ij; symmetry ij = ji }\n")
    assert _cli(["data", "check", str(out), "--spec", str(spec)]) == 1  # frame 1 has no alpha
    text = capsys.readouterr().out
    assert text.startswith(f"{out}: 1 of 2 records kept") and "(missing key)" in text
    with pytest.raises(DataError, match="^" + re.escape(f"{out}:record 1: ")):
        _cli(["data", "check", str(out), "--spec", str(spec), "--strict"])


def test_cli_check_reports_elements_beyond_the_model(tmp_path, capsys):
    """``tsym data check --max-z 53`` (a model trained with max_z: 53) lists a thulium record;
    the default (118, what the default embeddings cover) keeps it and prints the elements."""
    from ase.build import molecule

    frames = []
    for k in range(4):
        atoms = molecule("H2O")
        atoms.info["polarizability"] = np.eye(3).reshape(9) * (k + 1)
        frames.append(atoms)
    frames[2].numbers[0] = 69
    data, spec = tmp_path / "tm.extxyz", tmp_path / "alpha.tsym"
    ase.io.write(data, frames, format="extxyz")
    spec.write_text("tensor polarizability { indices ij; symmetry ij = ji }\n")
    assert _cli(["data", "check", str(data), "--spec", str(spec), "--max-z", "53"]) == 1
    text = capsys.readouterr().out
    assert text.startswith(f"{data}: 3 of 4 records kept; elements H O\n")
    assert ("skipped 1 (unknown element): records 2; first: record 2: atom 0 is Tm (Z = 69), an "
            "element the model does not cover (Z = 1..53)") in text
    assert _cli(["data", "check", str(data), "--spec", str(spec)]) == 0
    assert capsys.readouterr().out.startswith(f"{data}: 4 of 4 records kept; elements H O Tm")


# ------------------------------------------------------------------------ shared public data
@needs_shared
def test_becs_epsilon_e3nn():
    frames, report = convert("becs_epsilon_e3nn",
                             SHARED / "becs_epsilon_e3nn" / "phonon_becs_epsilon.xyz", limit=25)
    assert report.n_read == report.n_written == 25
    assert report.symmetry["dielectric"] < 1e-12
    assert report.point_group["born_charges"]["passed"] == 25
    assert report.checks["born_charge_sum_rule_max_abs"] < 1e-6
    for atoms in frames[:4]:
        eps = atoms.info["dielectric"].reshape(3, 3)
        np.testing.assert_allclose(eps, eps.T, atol=1e-12)
        assert _invariance(atoms, eps) < 1e-6


@needs_shared
def test_elastic_matten(tmp_path):
    path = SHARED / "elastic_matten" / "example_crystal_elasticity_tensor_n100.json"
    frames, report = convert("elastic_matten", path, check_symmetry=False)
    assert report.n_read == report.n_written == 100
    assert report.checks["voigt_vs_full_max_rel_diff"] < 1e-12
    c = np.stack([a.info["elastic"].reshape(3, 3, 3, 3) for a in frames])
    for perm in [(0, 2, 1, 3, 4), (0, 1, 2, 4, 3), (0, 3, 4, 1, 2)]:  # jikl, ijlk, klij
        np.testing.assert_allclose(c.transpose(perm), c, atol=1e-9 * np.abs(c).max())
    for atoms in frames[:5]:
        assert _invariance(atoms, atoms.info["elastic"].reshape(3, 3, 3, 3)) < 1e-2
    write_extxyz(tmp_path / "el.extxyz", frames[:10])
    plan = compile_text("tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij }")[0]
    ds = read_dataset(tmp_path / "el.extxyz", [LabelSpec("elastic", "elastic")], {"elastic": plan})
    assert len(ds) == 10 and ds.report.max_symmetry_deviation["elastic"] < 1e-12


@needs_shared
def test_nmr_si_matten(tmp_path):
    path = SHARED / "nmr_si_matten" / "si_nmr_data.json"
    raw = json.loads(path.read_text())
    frames, report = convert("nmr_si_matten", path, limit=20, expand_equivalent=True)
    assert report.n_written == 20 and len(raw["structure"]) == 421
    assert report.checks["one_labelled_si_per_orbit"] == "20/20"
    assert report.checks["sigma_iso_vs_trace_over_3_max_abs_ppm"] < 1e-6
    plain, _ = convert("nmr_si_matten", path, limit=3, check_symmetry=False)
    for k, atoms in enumerate(plain):
        mask = atoms.arrays["nmr_shielding_mask"]
        assert mask.tolist() == raw["atom_selector"][str(k)]
        t = atoms.arrays["nmr_shielding"].reshape(-1, 3, 3)
        np.testing.assert_array_equal(t[mask], np.asarray(raw["nmr_tensor"][str(k)]))
        assert np.isnan(t[~mask]).all()
    for atoms in frames[:3]:  # expanded: every Si labelled, T_g(a) = g T_a
        si = atoms.numbers == 14
        assert (atoms.arrays["nmr_shielding_mask"] == si).all()
        dev, missing = site_symmetry_deviation(atoms.arrays["nmr_shielding"].reshape(-1, 3, 3),
                                               symmetry_ops(atoms), si)
        assert dev < 1e-2 and missing == 0
    write_extxyz(tmp_path / "nmr.extxyz", plain)
    ds = read_dataset(tmp_path / "nmr.extxyz",
                      [LabelSpec("nmr_shielding", "nmr_shielding", level="atom")])
    assert [int(r.masks["nmr_shielding"].sum()) for r in ds] == [
        sum(raw["atom_selector"][str(k)]) for k in range(3)]


@needs_shared
def test_piezo_mp_matminer_ieee_rotation():
    frames, report = convert("piezo_mp_matminer",
                             SHARED / "piezo_mp_matminer" / "piezoelectric_tensor.csv")
    assert report.n_read == 941
    n_pymatgen = report.checks["frames_used"]["pymatgen"]
    assert n_pymatgen / 941 > 0.8  # README: 82% with pymatgen's get_ieee_rotation
    assert report.n_written / 941 > 0.95 and report.n_written + report.n_dropped == 941
    e = np.stack([a.info["piezoelectric"].reshape(3, 3, 3) for a in frames])
    np.testing.assert_allclose(e, e.transpose(0, 1, 3, 2), atol=1e-12)
    picks = [a for a in frames if a.info["ieee_frame"] == "pymatgen"][:3] + [
        a for a in frames if a.info["ieee_frame"] != "pymatgen"][:3]
    for atoms in picks:
        assert _invariance(atoms, atoms.info["piezoelectric"].reshape(3, 3, 3)) < 1e-2


@needs_shared
def test_molecular_sources_counts_and_symmetry():
    frames, report = convert("water_sagpr", SHARED / "water_sagpr" / "water_monomer.xyz")
    assert report.n_written == 1000 and report.symmetry["hyperpolarizability"] < 1e-12
    assert not frames[0].pbc.any()
    bulk_path = SHARED / "water_sagpr" / "water_bulk.xyz"
    assert "epsilon" not in ase.io.read(bulk_path, index=0).info  # why the parser exists
    frames, report = convert("water_sagpr", bulk_path, limit=50)
    assert report.checks["labels_present"]["dielectric"] == 50 and frames[0].pbc.all()
    assert report.symmetry["polarizability"] < 1e-3  # as shipped: ~3e-4
    frames, report = convert("qm9_alpha_slice",
                             SHARED / "qm9_alpha_slice" / "qm9_alpha_slice400.extxyz")
    assert (report.n_read, report.n_written, report.n_dropped) == (400, 337, 63)
    assert report.symmetry["polarizability"] < 1e-12
    frames, report = convert("water_apt", SHARED / "water_apt" / "train.xyz", cell=15.6627)
    assert report.n_written == 30 and all(len(a) == 384 for a in frames)
    assert all(a.pbc.all() and np.allclose(a.cell.lengths(), 15.6627) for a in frames)
    # the box fits the liquid: 128 molecules at ~1 g/cm^3, and no two oxygens closer than
    # 2.2 Angstrom through the periodic images (a wrong box would overlap the images)
    grams = 128 * 18.015 / 6.02214076e23
    assert grams / (frames[0].get_volume() * 1e-24) == pytest.approx(1.0, abs=0.01)
    oxygens = frames[0][frames[0].numbers == 8]
    pair = oxygens.get_all_distances(mic=True)
    assert pair[~np.eye(len(oxygens), dtype=bool)].min() > 2.2
    assert 0.5 < report.checks["born_charge_sum_rule_max_abs"] < 0.6  # README: up to 0.54
    frames, report = convert("water_gamma_tensoap",
                             SHARED / "water_gamma_tensoap" / "water_monomer_gamma.xyz", limit=100)
    assert report.n_written == 100 and report.symmetry["second_hyperpolarizability"] < 1e-12
    assert not frames[0].pbc.any()


@needs_shared
def test_abo3_piezo():
    frames, report = convert("abo3_piezo", SHARED / "abo3_piezo" / "ABO3_P4mm_piezo.db")
    assert report.n_written == 176
    assert report.symmetry["elastic"] < 1e-12 and report.symmetry["piezoelectric"] < 1e-12
    assert report.point_group["dielectric"]["passed"] == 176
    assert report.point_group["piezoelectric"]["passed"] >= 170
    for atoms in frames[:3]:
        assert _invariance(atoms, atoms.info["elastic"].reshape(3, 3, 3, 3), 1e-3) < 1e-2
        assert _invariance(atoms, atoms.info["piezoelectric"].reshape(3, 3, 3), 1e-3) < 1e-2


@needs_shared
def test_nmr_shiftml_magres_against_the_isotropic_column():
    """Every tensor's trace/3 equals the CS column of CSD-S546.xyz (an independent file)."""
    frames, report = convert("nmr_shiftml_s546", SHARED / "nmr_shiftml_s546" / "magres.zip", limit=40)
    assert report.n_read == 40 and len(frames) >= 38
    check = report.checks["isotropic_vs_CSD-S546.xyz"]
    assert check["structures"] == len(frames)
    assert check["max_abs_ppm"] < 0.01  # the xyz file rounds to 0.01 ppm
    for atoms in frames[:5]:
        ms = atoms.arrays["nmr_shielding"]
        assert ms.shape == (len(atoms), 9) and atoms.pbc.all()
        assert np.isfinite(ms).all()
