"""The conversion report, tsym's label keys and the symmetry checks shared by the converters."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..crystal import (index_symmetry_deviation, permutation_group, point_group_deviation,
                       site_symmetry_deviation, symmetry_ops)

__all__ = ["LABEL_KEYS", "INDEX_SYMMETRY", "ConversionReport", "check_crystal",
           "record_point_group", "finish"]

#: tsym key -> (level, order, unit); the key is the spec name except ``mu`` (ASE reserves
#: ``dipole`` for calculator results and moves it out of ``atoms.info`` when reading).
LABEL_KEYS = {
    "mu": ("structure", 1, "e*Angstrom"),
    "polarizability": ("structure", 2, "Bohr^3"),
    "dielectric": ("structure", 2, "dimensionless"),
    "dielectric_electronic": ("structure", 2, "dimensionless"),
    "hyperpolarizability": ("structure", 3, "e^3*Bohr^3/Hartree^2"),
    "second_hyperpolarizability": ("structure", 4, "e^4*Bohr^4/Hartree^3"),
    "elastic": ("structure", 4, "GPa"),
    "piezoelectric": ("structure", 3, "C/m^2"),
    "born_charges": ("atom", 2, "e"),
    "nmr_shielding": ("atom", 2, "ppm"),
}

#: Generators of the index permutations each label must be invariant under (as in ``specs/``).
INDEX_SYMMETRY = {
    "mu": [],
    "polarizability": [(1, 0)],
    "dielectric": [(1, 0)],
    "dielectric_electronic": [(1, 0)],
    "hyperpolarizability": [(1, 0, 2), (0, 2, 1)],
    "second_hyperpolarizability": [(1, 0, 2, 3), (0, 2, 1, 3), (0, 1, 3, 2)],
    "elastic": [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)],
    "piezoelectric": [(0, 2, 1)],
    "born_charges": [],
    "nmr_shielding": [],
}


@dataclass
class ConversionReport:
    """What a converter read, wrote and dropped, and how symmetric the written tensors are.

    ``dropped[reason]``: ``[(entry, detail)]`` with ``entry`` the 0-based position in the source;
    ``symmetry[key]``: max ``|T - P(T)| / |T|`` over the written tensors, ``P`` the average over
    the key's index permutations (:data:`INDEX_SYMMETRY`); ``point_group[key]``: checked, passed
    and max deviation of crystal point-group invariance (spglib); ``checks``: converter-specific
    numbers (e.g. Voigt vs full agreement); ``notes``: conventions and caveats, in words.
    """

    kind: str
    source: str
    n_read: int = 0
    n_written: int = 0
    dropped: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    symmetry: dict[str, float] = field(default_factory=dict)
    point_group: dict[str, dict] = field(default_factory=dict)
    checks: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def drop(self, entry: int, reason: str, detail: str = "") -> None:
        self.dropped.setdefault(reason, []).append((int(entry), detail))

    @property
    def n_dropped(self) -> int:
        return sum(len(v) for v in self.dropped.values())

    def summary(self) -> str:
        lines = [f"{self.kind}: {self.source}", f"  read {self.n_read}, wrote {self.n_written}, "
                 f"dropped {self.n_dropped}"]
        for reason, items in self.dropped.items():
            lines.append(f"  dropped {len(items)}: {reason} (e.g. entry {items[0][0]} "
                         f"{items[0][1]})".rstrip())
        for key, dev in self.symmetry.items():
            lines.append(f"  {key}: max index-symmetry deviation {dev:.3g}")
        for key, pg in self.point_group.items():
            lines.append(f"  {key}: point-group invariance {pg['passed']}/{pg['checked']} "
                         f"(tol {pg['tol']:g}), max deviation {pg['max_deviation']:.3g}")
        for name, value in self.checks.items():
            lines.append(f"  {name}: {_fmt(value)}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return json.loads(json.dumps({
            "kind": self.kind, "source": self.source, "n_read": self.n_read,
            "n_written": self.n_written, "dropped": self.dropped, "symmetry": self.symmetry,
            "point_group": self.point_group, "checks": self.checks, "notes": self.notes,
        }, default=_json_default))


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def record_point_group(report: ConversionReport, key: str, entry: int, dev: float,
                       tol: float) -> bool:
    """Count one point-group check of ``key`` in ``report``; True when ``dev <= tol``."""
    pg = report.point_group.setdefault(
        key, {"checked": 0, "passed": 0, "max_deviation": 0.0, "tol": tol, "failed": []})
    pg["checked"] += 1
    pg["max_deviation"] = max(pg["max_deviation"], float(dev))
    if dev <= tol:
        pg["passed"] += 1
        return True
    pg["failed"].append(int(entry))
    return False


def check_crystal(report: ConversionReport, entry: int, atoms, tensors: dict,
                  per_atom: dict | None = None, *, symprec: float = 1e-2, tol: float = 1e-2
                  ):
    """Point-group invariance of ``tensors`` (key -> [3, ..., 3]) and site symmetry of
    ``per_atom`` (key -> ([n, 3, ..., 3], mask or None)), added to ``report``.

    Returns the :class:`SymmetryOps` (None when spglib fails, which is counted)."""
    try:
        ops = symmetry_ops(atoms, symprec=symprec)
    except ValueError as err:
        report.checks["spglib_failures"] = report.checks.get("spglib_failures", 0) + 1
        report.notes.append(f"entry {entry}: {err}")
        return None
    items = [(k, point_group_deviation(t, ops)) for k, t in tensors.items()]
    for key, (t, mask) in (per_atom or {}).items():
        dev, missing = site_symmetry_deviation(t, ops, mask)
        if missing:  # (operation, atom) pairs whose image is unlabelled: not scored
            name = f"{key}_site_images_unlabelled"
            report.checks[name] = report.checks.get(name, 0) + missing
        items.append((key, dev))
    for key, dev in items:
        record_point_group(report, key, entry, dev, tol)
    return ops


def read_frames(path, limit: int | None = None) -> list:
    """The frames of an extended XYZ file (the first ``limit`` of them when given)."""
    import ase.io

    return ase.io.read(path, index=":" if limit is None else f":{int(limit)}", format="extxyz")


def finish(report: ConversionReport, frames: list) -> list:
    """Record ``n_written`` and the max index-symmetry deviation of every known label key."""
    report.n_written = len(frames)
    for key, gens in INDEX_SYMMETRY.items():
        if not gens:
            continue  # no index symmetry to check
        level, order, _ = LABEL_KEYS[key]
        group = permutation_group(gens, order)
        worst = None
        for atoms in frames:
            store = atoms.arrays if level == "atom" else atoms.info
            if key not in store:
                continue
            t = np.asarray(store[key], dtype=np.float64).reshape((-1,) + (3,) * order)
            t = t[np.isfinite(t.reshape(len(t), -1)).all(axis=1)]  # unlabelled NaN rows out
            if len(t):
                dev = float(index_symmetry_deviation(t, group).max())
                worst = dev if worst is None else max(worst, dev)
        if worst is not None:
            report.symmetry[key] = worst
    return frames
