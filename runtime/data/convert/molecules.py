"""Converters for the molecular and liquid data sets: SA-GPR water, water APTs, QM9 alpha,
QM7-X (atomistic cookbook), TENSOAP water gamma."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from ase import Atoms

from .common import ConversionReport, finish, info_tensor, read_frames

__all__ = ["convert_water_sagpr", "convert_water_apt", "convert_qm9_alpha_slice",
           "convert_qm7x_cookbook", "convert_water_gamma_tensoap", "BOHR_IN_ANGSTROM"]

BOHR_IN_ANGSTROM = 0.529177210903  # CODATA 2018
_PAIR = re.compile(r'(\w+)=("([^"]*)"|\S+)')


def _xyz_blocks(path, limit: int | None):
    """(frame, comment line, atom lines) of a plain multi-frame XYZ file."""
    lines = Path(path).read_text().splitlines()
    pos, frame = 0, 0
    while pos < len(lines) and (limit is None or frame < limit):
        if not lines[pos].strip():
            pos += 1
            continue
        try:
            n = int(lines[pos].split()[0])
        except ValueError:
            raise ValueError(f"{path}: line {pos + 1}: expected an atom count, got "
                             f"{lines[pos][:40]!r}") from None
        yield frame, lines[pos + 1], lines[pos + 2:pos + 2 + n]
        pos += 2 + n
        frame += 1


def _header(comment: str) -> dict[str, str]:
    return {m.group(1): (m.group(3) if m.group(3) is not None else m.group(2))
            for m in _PAIR.finditer(comment)}


def _numbers(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.split()], dtype=np.float64)


def _molecule(atom_lines: list[str], n_extra: int = 0) -> tuple[Atoms, np.ndarray]:
    """Atoms from ``S x y z [extra ...]`` lines (pbc False) and the extra columns [n, n_extra]."""
    fields = [line.split() for line in atom_lines]
    if any(len(f) != 4 + n_extra for f in fields):
        bad = next(len(f) for f in fields if len(f) != 4 + n_extra)
        raise ValueError(f"an atom line has {bad} fields, expected {4 + n_extra}")
    symbols = [f[0] for f in fields]
    values = np.array([[float(x) for x in f[1:]] for f in fields], dtype=np.float64)
    return Atoms(symbols=symbols, positions=values[:, :3], pbc=False), values[:, 3:]


# SA-GPR key -> (tsym key, number of values, scale into the tsym unit)
_SAGPR = {"mu": ("mu", 3, BOHR_IN_ANGSTROM), "alpha": ("polarizability", 9, 1.0),
          "beta": ("hyperpolarizability", 27, 1.0), "epsilon": ("dielectric", 9, 1.0)}


def convert_water_sagpr(path, *, limit: int | None = None):
    """SA-GPR water files, parsed directly (ASE drops the space-padded ``mu``/``epsilon`` of
    ``water_bulk.xyz`` and makes the all-zero ``Lattice`` of gas-phase frames periodic).

    ``mu`` (e*Bohr) -> ``mu`` (e*Angstrom); ``alpha`` -> ``polarizability`` (Bohr^3); ``beta`` ->
    ``hyperpolarizability`` (a.u.); ``epsilon`` -> ``dielectric``.  An all-zero or absent Lattice
    gives a molecule (pbc False); empty values (``beta=""``) are left out of that frame.
    """
    report = ConversionReport("water_sagpr", str(path))
    out, present = [], {}
    for k, comment, atom_lines in _xyz_blocks(path, limit):
        report.n_read += 1
        head = _header(comment)
        try:
            atoms, _ = _molecule(atom_lines)
            lattice = _numbers(head.get("Lattice", ""))
            if lattice.size == 9 and np.any(lattice != 0):
                atoms.cell, atoms.pbc = lattice.reshape(3, 3), True
            labels = {}
            for src, (key, size, scale) in _SAGPR.items():
                text = head.get(src, "").strip()
                if text:
                    values = _numbers(text)
                    if values.size != size or not np.isfinite(values).all():
                        raise ValueError(f"{src} has {values.size} values, expected {size}")
                    labels[key] = values * scale
        except ValueError as err:
            report.drop(k, "unreadable frame", str(err))
            continue
        atoms.info.update(labels)
        if head.get("potential", "").strip():
            atoms.info["potential_hartree"] = float(head["potential"])
        for key in labels:
            present[key] = present.get(key, 0) + 1
        out.append(atoms)
    report.checks["labels_present"] = present
    report.notes.append("positions in Angstrom; mu converted from e*Bohr to e*Angstrom; alpha, "
                        "beta, epsilon kept in atomic units; beta checked for full index symmetry")
    return finish(report, out), report


def convert_water_apt(path, *, limit: int | None = None, cell=None):
    """Water atomic polar tensors: ``S x y z`` + 9 columns (row-major Z*) -> ``born_charges``.

    A ``Lattice="..."`` or aptnn-style ``box=ax:ay:...`` header gives the cell.  The shared files
    carry none: pass ``cell`` (an edge, 3 edges or a 3x3 matrix, Angstrom) to make the
    frames periodic; otherwise they are written as clusters (pbc False) and the report says so.
    """
    report = ConversionReport("water_apt", str(path))
    out, worst_sum, extent = [], 0.0, 0.0
    for k, comment, atom_lines in _xyz_blocks(path, limit):
        report.n_read += 1
        try:
            atoms, extra = _molecule(atom_lines, n_extra=9)
        except ValueError as err:
            report.drop(k, "unreadable frame", str(err))
            continue
        if not np.isfinite(extra).all():
            report.drop(k, "non-finite tensor")
            continue
        head = _header(comment)
        lattice = _numbers(head.get("Lattice", head.get("box", "")).replace(":", " "))
        if cell is not None or lattice.size == 9:
            c = np.asarray(cell if cell is not None else lattice.reshape(3, 3), dtype=np.float64)
            atoms.cell = np.diag(np.broadcast_to(c, (3,))) if c.ndim <= 1 else c
            atoms.pbc = True
        atoms.arrays["born_charges"] = extra
        worst_sum = max(worst_sum, float(np.abs(extra.reshape(-1, 3, 3).sum(axis=0)).max()))
        extent = max(extent, float(np.ptp(atoms.positions, axis=0).max()))
        out.append(atoms)
    report.checks["born_charge_sum_rule_max_abs"] = worst_sum
    report.checks["max_coordinate_extent_angstrom"] = extent
    if cell is None:
        report.notes.append("no cell in the file and none given: frames written as clusters "
                            "(pbc False); pass cell=... for periodic liquid water")
    report.notes.append("Z*_ij = dM_i / dr_j (row: dipole component, column: displacement), "
                        "row-major as written by the source's compute-apt.py; units e")
    return finish(report, out), report


def convert_qm9_alpha_slice(path, *, limit: int | None = None, min_sign_margin: float = 0.02):
    """QM9 polarizabilities in the geometry's frame: ``alpha`` (Bohr^3) -> ``polarizability``.

    Molecules whose frame sign choice is uncertain (``sign_margin < min_sign_margin``) are
    dropped and counted; ``min_sign_margin=0`` keeps all of them.
    """
    report = ConversionReport("qm9_alpha_slice", str(path))
    out = []
    for k, src in report.entries(read_frames(path, limit)):
        alpha = info_tensor(report, k, src, "alpha", 9)
        if alpha is None:
            continue
        margin = float(src.info.get("sign_margin", np.inf))
        if margin < min_sign_margin:
            report.drop(k, f"sign_margin < {min_sign_margin:g} (uncertain frame)",
                        f"qm9_index {src.info.get('qm9_index')}")
            continue
        atoms = Atoms(numbers=src.numbers, positions=src.positions, pbc=False)
        atoms.info["polarizability"] = alpha
        for key in ("qm9_index", "smiles", "sign_margin"):
            if key in src.info:
                atoms.info[key] = src.info[key]
        out.append(atoms)
    report.notes.append("alpha in Bohr^3 (B3LYP/6-31G(2df,p)), rotated into the geometry's "
                        "frame by the data set's maker")
    return finish(report, out), report


def convert_qm7x_cookbook(path, *, limit: int | None = None):
    """QM7-X extracts of the atomistic cookbook: ``polarizability`` or ``alpha`` ->
    ``polarizability``; ``mu`` -> ``mu`` (kept as given)."""
    report = ConversionReport("qm7x_cookbook", str(path))
    out = []
    for k, src in report.entries(read_frames(path, limit)):
        alpha = src.info.get("polarizability", src.info.get("alpha"))
        mu = src.info.get("mu")
        if alpha is None or np.asarray(alpha).size != 9:
            report.drop(k, "missing or bad polarizability")
            continue
        atoms = Atoms(numbers=src.numbers, positions=src.positions, pbc=False)
        atoms.info["polarizability"] = np.asarray(alpha, dtype=np.float64).reshape(9)
        if mu is not None and np.asarray(mu).size == 3:
            atoms.info["mu"] = np.asarray(mu, dtype=np.float64).reshape(3)
        out.append(atoms)
    report.notes.append("units are not stated in the files: polarizability assumed Bohr^3 and mu "
                        "assumed e*Angstrom (QM7-X conventions), both unverified")
    return finish(report, out), report


def convert_water_gamma_tensoap(path, *, limit: int | None = None):
    """TENSOAP water monomers: ``gamma`` (81, a.u.) -> ``second_hyperpolarizability``; the
    header says ``pbc="T T T"`` without a Lattice, so the frames are made molecules (pbc False)."""
    report = ConversionReport("water_gamma_tensoap", str(path))
    out = []
    for k, src in report.entries(read_frames(path, limit)):
        gamma = info_tensor(report, k, src, "gamma", 81)
        if gamma is not None:
            atoms = Atoms(numbers=src.numbers, positions=src.positions, pbc=False)
            atoms.info["second_hyperpolarizability"] = gamma
            out.append(atoms)
    report.notes.append("pbc set to False (periodic flags without a cell in the source)")
    return finish(report, out), report
