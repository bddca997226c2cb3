"""ShiftML CSD-S546: GIPAW NMR shielding tensors of molecular crystals from a zip of magres files.

Each ``magres/<CSD refcode>.nmr.magres`` file of ``magres.zip`` is read with ASE's ``magres``
reader: the periodic structure and, per atom, the full magnetic shielding tensor ``ms`` (3x3 in
ppm, not symmetric, in the Cartesian frame of the structure).  It becomes ``nmr_shielding``
(``atoms.arrays``, 9 numbers a row, row-major).  When ``CSD-S546.xyz`` lies beside the zip, the
isotropic shielding ``trace/3`` of every converted tensor is compared with its ``CS`` column
(structures matched by ``NAME``), and the largest difference goes to the report.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from .common import ConversionReport, finish

__all__ = ["convert_nmr_shiftml"]


def _isotropic_reference(xyz: Path) -> dict[str, np.ndarray]:
    out = {}
    for frame in ase.io.read(xyz, index=":", format="extxyz"):
        name = str(frame.info.get("NAME", ""))
        if name and "CS" in frame.arrays:
            out[name] = np.asarray(frame.arrays["CS"], dtype=np.float64).reshape(-1)
    return out


def convert_nmr_shiftml(path, *, limit: int | None = None):
    """``magres.zip`` of ShiftML CSD-S546 -> crystals with per-atom ``nmr_shielding`` (ppm)."""
    report = ConversionReport("nmr_shiftml_s546", str(path))
    path = Path(path)
    xyz = path.with_name("CSD-S546.xyz")
    reference = _isotropic_reference(xyz) if xyz.is_file() else {}
    out, worst_iso, compared = [], 0.0, 0
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".magres"))
        if limit is not None:
            names = names[: int(limit)]
        for k, name in report.entries(names):
            try:
                src = ase.io.read(io.StringIO(archive.read(name).decode()), format="magres")
            except Exception as err:  # noqa: BLE001 - ASE's reader raises many kinds
                report.drop(k, "unreadable magres file", f"{name}: {type(err).__name__}: {err}")
                continue
            ms = np.asarray(src.arrays.get("ms", []), dtype=np.float64)
            if ms.shape != (len(src), 3, 3) or not np.isfinite(ms).all():
                report.drop(k, "missing or bad shielding tensors", name)
                continue
            atoms = Atoms(numbers=src.numbers, positions=src.positions, cell=src.cell, pbc=True)
            atoms.arrays["nmr_shielding"] = ms.reshape(len(src), 9)
            refcode = Path(name).name.split(".")[0]
            atoms.info["name"] = refcode
            iso = reference.get(refcode)
            if iso is not None and len(iso) == len(src):
                worst_iso = max(worst_iso, float(np.abs(np.trace(ms, axis1=1, axis2=2) / 3 - iso).max()))
                compared += 1
            out.append(atoms)
    report.checks["isotropic_vs_CSD-S546.xyz"] = {"structures": compared, "max_abs_ppm": worst_iso}
    report.notes.append("full GIPAW shielding tensors (ppm), not symmetric, as ASE's magres reader "
                        "gives them (row index as in the magres file)")
    return finish(report, out), report
