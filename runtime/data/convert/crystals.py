"""Converters for the crystal data sets: e3nn BECs/epsilon, MatTen elastic and Si NMR,
matminer/Materials Project piezoelectric tensors, ABO3 P4mm (ASE database)."""
from __future__ import annotations

import ast
import csv
import io
import json
from pathlib import Path

import ase.db
import ase.io
import numpy as np
from ase import Atoms

from tsym.runtime.equivariance import rotate_cartesian

from ..crystal import (atoms_from_pymatgen, crystal_system, ieee_candidates,
                       max_operation_deviation, symmetry_ops)
from ..voigt import voigt_to_tensor3, voigt_to_tensor4
from .common import (ConversionReport, check_crystal, finish, read_frames,
                     record_point_group)

__all__ = ["convert_becs_epsilon", "convert_elastic_matten", "convert_nmr_si_matten",
           "convert_piezo_mp_matminer", "convert_abo3_piezo"]

_BECS_NOTE = ("eps is probably the electronic (high-frequency) dielectric tensor (data README; not "
              "verified); becs row index = field, column = displacement as stored (row-major 9 "
              "numbers)")
_ABO3_NOTE = ("6x6 and 3x6 read in IEEE Voigt order (xx, yy, zz, yz, xz, xy; C44 = C55 and e15 = "
              "e24 confirm it for P4mm), no factors; 'dielectric' is the total (electronic + "
              "ionic), 'dielectric_electronic' the clamped-ion part")


def _fresh(atoms: Atoms) -> Atoms:
    """Same species, positions, cell and pbc; no info, arrays or calculator."""
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell,
                 pbc=atoms.pbc)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


def convert_becs_epsilon(path, *, limit: int | None = None, check_symmetry: bool = True,
                         symprec: float = 1e-2, tol: float = 1e-2):
    """``phonon_becs_epsilon.xyz`` (already extxyz): ``eps`` -> ``dielectric``, ``becs`` ->
    ``born_charges``; checks the charge sum rule and point-group / site-symmetry invariance."""
    report = ConversionReport("becs_epsilon_e3nn", str(path))
    frames = read_frames(path, limit)
    out, worst_sum = [], 0.0
    for k, src in report.entries(frames):
        if "eps" not in src.info or "becs" not in src.arrays:
            report.drop(k, "missing eps or becs")
            continue
        eps = np.asarray(src.info["eps"], dtype=np.float64).reshape(3, 3)
        becs = np.asarray(src.arrays["becs"], dtype=np.float64).reshape(-1, 3, 3)
        if not (np.isfinite(eps).all() and np.isfinite(becs).all()):
            report.drop(k, "non-finite tensor")
            continue
        atoms = _fresh(src)
        atoms.info["dielectric"] = eps.reshape(9)
        atoms.arrays["born_charges"] = becs.reshape(len(atoms), 9)
        if check_symmetry:
            check_crystal(report, k, atoms, {"dielectric": eps}, {"born_charges": (becs, None)},
                          symprec=symprec, tol=tol)
        worst_sum = max(worst_sum, float(np.abs(becs.sum(axis=0)).max()))
        out.append(atoms)
    report.checks["born_charge_sum_rule_max_abs"] = worst_sum
    report.notes.append(_BECS_NOTE)
    return finish(report, out), report


def _columns(path) -> tuple[dict, list]:
    """A pandas ``to_json`` column-oriented dict and its row ids in numeric order."""
    data = json.loads(Path(path).read_text())
    first = next(iter(data.values()))
    ids = sorted(first, key=lambda s: (0, int(s)) if str(s).isdigit() else (1, str(s)))
    return data, ids


def convert_elastic_matten(path, *, limit: int | None = None, check_symmetry: bool = True,
                           symprec: float = 1e-2, tol: float = 1e-2):
    """MatTen elastic tensors: ``elastic_tensor_full`` (3x3x3x3, GPa) -> ``elastic`` (81 numbers);
    ``elastic_tensor_voigt`` is compared with the full tensor through :func:`voigt_to_tensor4`."""
    report = ConversionReport("elastic_matten", str(path))
    data, ids = _columns(path)
    voigts = data.get("elastic_tensor_voigt", {})
    out, worst_voigt, systems_agree = [], 0.0, 0
    for k, rid in report.entries(ids[:limit]):
        try:
            atoms = atoms_from_pymatgen(data["structure"][rid])
            full = np.asarray(data["elastic_tensor_full"][rid], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            report.drop(k, "bad structure or tensor", f"{rid}: {err}")
            continue
        if full.shape != (3, 3, 3, 3) or not np.isfinite(full).all():
            report.drop(k, "bad tensor", f"{rid}: shape {full.shape}")
            continue
        if rid in voigts:
            worst_voigt = max(worst_voigt, _rel(full, voigt_to_tensor4(voigts[rid])))
        atoms.info["elastic"] = full.reshape(81)
        for name in ("formula_pretty", "crystal_system", "split"):
            if name in data and rid in data[name]:
                atoms.info[name] = str(data[name][rid])
        atoms.info["source_id"] = str(rid)
        if check_symmetry:
            ops = check_crystal(report, k, atoms, {"elastic": full}, symprec=symprec, tol=tol)
            systems_agree += ops is not None and (
                crystal_system(ops.number) == atoms.info.get("crystal_system"))
        out.append(atoms)
    report.checks["voigt_vs_full_max_rel_diff"] = worst_voigt
    if check_symmetry:
        report.checks["crystal_system_column_agrees_with_spglib"] = f"{systems_agree}/{len(out)}"
    report.notes.append("elastic_tensor_full is used as given (structure frame, GPa)")
    return finish(report, out), report


def convert_nmr_si_matten(path, *, limit: int | None = None, check_symmetry: bool = True,
                          symprec: float = 1e-2, tol: float = 1e-2,
                          expand_equivalent: bool = False):
    """29Si NMR tensors: ``nmr_tensor`` (one 3x3 per selected atom) -> per-atom ``nmr_shielding``
    [n, 9] with NaN rows for unselected atoms, plus ``nmr_shielding_mask`` (= ``atom_selector``).

    ``atom_selector`` marks one Si per set of symmetry-equivalent Si (checked).  With
    ``expand_equivalent`` (needs ``check_symmetry``) the other atoms of each set get the tensor
    ``T_{g(a)} = R_g T_a R_g^T`` and are marked labelled too."""
    report = ConversionReport("nmr_si_matten", str(path))
    data, ids = _columns(path)
    out, worst_iso, one_per_orbit = [], 0.0, 0
    for k, rid in report.entries(ids[:limit]):
        try:
            atoms = atoms_from_pymatgen(data["structure"][rid])
            selector = np.asarray(data["atom_selector"][rid], dtype=bool)
            tensors = np.asarray(data["nmr_tensor"][rid], dtype=np.float64).reshape(-1, 3, 3)
        except (KeyError, TypeError, ValueError) as err:
            report.drop(k, "bad structure or tensor", f"{rid}: {err}")
            continue
        n = len(atoms)
        species = data.get("species", {}).get(rid)
        if species is not None and list(species) != atoms.numbers.tolist():
            report.drop(k, "species disagree with the structure", str(rid))
            continue
        if selector.shape != (n,) or int(selector.sum()) != len(tensors):
            report.drop(k, "atom_selector does not match the tensors",
                        f"{rid}: {selector.shape} selector, {int(selector.sum())} selected, "
                        f"{len(tensors)} tensors, {n} atoms")
            continue
        if not np.isfinite(tensors).all():
            report.drop(k, "non-finite tensor", str(rid))
            continue
        full = np.full((n, 3, 3), np.nan)
        full[selector] = tensors
        atoms.arrays["nmr_shielding"] = full.reshape(n, 9)
        atoms.arrays["nmr_shielding_mask"] = selector
        iso = data.get("sigma_iso", {}).get(rid)
        if iso is not None and len(iso) == len(tensors):
            trace = np.trace(tensors, axis1=1, axis2=2) / 3
            worst_iso = max(worst_iso, float(np.abs(trace - np.asarray(iso)).max()))
        atoms.info["source_id"] = str(rid)
        if check_symmetry:
            ops = check_crystal(report, k, atoms, {}, {"nmr_shielding": (full, selector)},
                                symprec=symprec, tol=tol)
            if ops is not None:
                eq = ops.dataset.equivalent_atoms
                orbits, labelled = set(eq[atoms.numbers == 14]), eq[selector]
                one_per_orbit += len(set(labelled)) == len(labelled) and set(labelled) == orbits
                if expand_equivalent:
                    _expand(full, selector, ops)
                    atoms.arrays["nmr_shielding"] = full.reshape(n, 9)
        out.append(atoms)
    if check_symmetry:
        report.checks["one_labelled_si_per_orbit"] = f"{one_per_orbit}/{len(out)}"
    report.checks["sigma_iso_vs_trace_over_3_max_abs_ppm"] = worst_iso
    report.notes.append("tensors kept as given (row-major, no index symmetry assumed; which "
                        "index is the field is not stated in the source); site symmetry is "
                        "scored on (operation, atom) pairs whose image is labelled, i.e. the "
                        "site stabilisers unless expand_equivalent=True")
    return finish(report, out), report


def _expand(full: np.ndarray, mask: np.ndarray, ops) -> None:
    """Fill unlabelled atoms from labelled equivalent ones, in place: ``T_{g(a)} = g T_a``."""
    for r, perm in zip(ops.rotations, ops.permutations):
        for a in np.flatnonzero(mask.copy()):
            b = perm[a]
            if b >= 0 and not mask[b]:
                full[b] = rotate_cartesian(full[a], r)
                mask[b] = True


def _read_matminer_csv(path) -> tuple[list[dict], bool]:
    """Rows of the matminer CSV (comment lines skipped).  Returns (rows, shifted): ``shifted`` when
    the rows have one field more than the header (an unnamed leading index column)."""
    csv.field_size_limit(1 << 30)
    with open(path, newline="") as fh:
        lines = (line for line in fh if not line.startswith("#"))
        reader = csv.reader(lines)
        header = next(reader)
        rows = list(reader)
    shifted = bool(rows) and len(rows[0]) == len(header) + 1
    names = (["_index"] + header) if shifted else header
    return [dict(zip(names, r)) for r in rows], shifted


def _piezo_structure(row: dict) -> Atoms:
    poscar = row.get("poscar", "")
    if "direct" not in poscar.lower() and "cartesian" not in poscar.lower():
        meta = ast.literal_eval(row["meta"]) if row.get("meta", "").startswith("{") else {}
        poscar = meta.get("poscar", poscar)
    return ase.io.read(io.StringIO(poscar), format="vasp")


def convert_piezo_mp_matminer(path, *, limit: int | None = None, symprec: float = 1e-2,
                              tol: float = 1e-2, fallback: bool = True,
                              keep_failing: bool = False):
    """Materials Project piezoelectric tensors (matminer CSV): 3x6 IEEE-frame Voigt -> ``e_ijk``
    rotated into the frame of the structure (POSCAR column) -> ``piezoelectric`` (27 numbers).

    The IEEE frame follows pymatgen's ``get_ieee_rotation`` (:func:`ieee_rotation`), checked by
    point-group invariance of the rotated tensor (``tol``, relative).  With ``fallback``, an entry
    that fails is tried in the other candidate frames of :func:`ieee_candidates`; the frame used
    is stored in ``info["ieee_frame"]``.  Entries that fail in every frame are dropped (counted)
    unless ``keep_failing`` (then kept in pymatgen's frame, ``ieee_frame="pymatgen-failing"``).
    """
    report = ConversionReport("piezo_mp_matminer", str(path))
    rows, shifted = _read_matminer_csv(path)
    if shifted:
        report.notes.append("the CSV rows have one field more than its header (an unnamed "
                            "leading index); columns were realigned (the 'structure' column "
                            "then holds a P1 CIF; the structure is read from 'poscar')")
    n_checked, n_given, frames_used, pg_agree = 0, 0, {}, 0
    out = []
    for k, row in report.entries(rows[:limit]):
        try:
            voigt = np.asarray(json.loads(row["piezoelectric_tensor"]), dtype=np.float64)
            atoms = _piezo_structure(row)
        except Exception as err:  # noqa: BLE001 - any parse failure drops the entry, counted
            report.drop(k, "unreadable entry", f"{type(err).__name__}: {err}"[:120])
            continue
        if voigt.shape != (3, 6) or not np.isfinite(voigt).all():
            report.drop(k, "bad tensor", f"shape {voigt.shape}")
            continue
        ieee = voigt_to_tensor3(voigt)  # [3, 3, 3] IEEE frame
        ops = symmetry_ops(atoms, symprec=symprec)
        n_checked += 1
        pg_agree += ops.dataset.pointgroup.replace(" ", "") == row.get("point_group", "").strip()
        n_given += max_operation_deviation(ieee, ops) <= tol
        candidates = ieee_candidates(atoms, ops)
        tried = []
        for name, r in candidates if fallback else candidates[:1]:
            t = rotate_cartesian(ieee, r.T)  # IEEE -> structure frame
            tried.append((max_operation_deviation(t, ops), name, t))
            if tried[-1][0] <= tol:
                break
        dev, name, t = tried[-1]
        record_point_group(report, "piezoelectric", k, dev, tol)
        if dev > tol:
            if not keep_failing:
                report.drop(k, "not point-group invariant in any IEEE frame",
                            f"{row.get('material_id', '')} (point group {row.get('point_group')}"
                            f" in the CSV, {ops.dataset.pointgroup} from spglib; best "
                            f"deviation {min(d for d, _, _ in tried):.3g})")
                continue
            dev, name, t = tried[0][0], "pymatgen-failing", tried[0][2]
        frames_used[name] = frames_used.get(name, 0) + 1
        atoms = _fresh(atoms)
        atoms.info["piezoelectric"] = t.reshape(27)
        atoms.info["ieee_frame"] = name
        for key in ("material_id", "formula", "point_group"):
            if row.get(key):
                atoms.info[key] = row[key].strip()
        out.append(atoms)
    n = n_checked
    report.checks["point_group_invariant_as_given"] = f"{n_given}/{n}"
    report.checks["frames_used"] = frames_used
    report.checks["invariant_in_pymatgen_ieee_frame"] = f"{frames_used.get('pymatgen', 0)}/{n}"
    report.checks["point_group_column_agrees_with_spglib"] = f"{pg_agree}/{n}"
    report.notes.append(
        "invariance is necessary, not sufficient: a frame change by a rotation that maps the "
        "point group onto itself keeps the rotated tensor invariant while changing it (the "
        "sign along a polar axis when c -> -c, the sign of e14 in -43m under a 90-degree turn, "
        "x <-> y in 222 and mm2, any frame in 1): such choices follow spglib's conventional "
        "cell and cannot be checked against the frame Materials Project used")
    return finish(report, out), report


_ABO3 = {  # our key -> (ASE db data key, kind)
    "elastic": ("Elastic Stiffness Tensor Cij", "voigt4"),
    "piezoelectric": ("Piezoelectric Stress Tensor eij", "voigt3"),
    "dielectric": ("Dielectric Tensor", "3x3"),
    "dielectric_electronic": ("Static Dielectric Tensor", "3x3"),
}
_ABO3_PARTS = {  # total = clamped-ion ("static") + ionic, checked
    "elastic": ("Static Elastic Tensor", "Ionic Elastic Tensor"),
    "piezoelectric": ("Static Piezoelectric Tensor", "Ionic Piezoelectric Tensor"),
    "dielectric": ("Static Dielectric Tensor", "Ionic Dielectric Tensor"),
}
_BORN = "Born Effective Charge Tensor"


def convert_abo3_piezo(path, *, limit: int | None = None, check_symmetry: bool = True,
                       symprec: float = 1e-3, tol: float = 1e-2):
    """ABO3 P4mm database: relaxed-ion stiffness (6x6 GPa), piezoelectric ``e`` (3x6 C/m^2),
    total and electronic dielectric tensors, Born charges (n, 3, 3).

    ``symprec`` is 1e-3 Angstrom by default: at 1e-2 spglib finds a centrosymmetric group for
    some nearly centrosymmetric P4mm cells, and their (nonzero) ``e`` then fails the check."""
    report = ConversionReport("abo3_piezo", str(path))
    worst_parts = {key: 0.0 for key in _ABO3_PARTS}
    out = []
    for k, row in report.entries(ase.db.connect(str(path)).select(limit=limit)):
        data = row.data
        missing = [src for src, _ in _ABO3.values() if src not in data] + (
            [] if _BORN in data else [_BORN])
        if missing:
            report.drop(k, "missing tensors", f"id {row.id}: {missing}")
            continue
        atoms = _fresh(row.toatoms())
        tensors = {}
        for key, (src, kind) in _ABO3.items():
            value = np.asarray(data[src], dtype=np.float64)
            tensors[key] = (voigt_to_tensor4(value) if kind == "voigt4" else
                            voigt_to_tensor3(value) if kind == "voigt3" else value.reshape(3, 3))
            if key in _ABO3_PARTS:
                a, b = (np.asarray(data[p], dtype=np.float64) for p in _ABO3_PARTS[key])
                worst_parts[key] = max(worst_parts[key], _rel(value, a + b))
        born = np.asarray(data[_BORN], dtype=np.float64).reshape(len(atoms), 3, 3)
        for key, t in tensors.items():
            atoms.info[key] = t.reshape(-1)
        atoms.arrays["born_charges"] = born.reshape(len(atoms), 9)
        atoms.info["formula"] = str(row.get("ABO3_formula", atoms.get_chemical_formula()))
        atoms.info["source_id"] = int(row.id)
        if check_symmetry:
            check_crystal(report, k, atoms, tensors, {"born_charges": (born, None)},
                          symprec=symprec, tol=tol)
        out.append(atoms)
    report.checks["total_vs_static_plus_ionic_max_rel_diff"] = worst_parts
    report.notes.append(_ABO3_NOTE)
    return finish(report, out), report
