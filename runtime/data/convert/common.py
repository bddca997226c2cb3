"""The conversion report, tsym's label keys and the symmetry checks shared by the converters."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

import ase.io
import numpy as np

from tsym.compiler import HeadPlan, compile_text

from ..crystal import max_operation_deviation, site_symmetry_deviation, symmetry_ops
from ..records import symmetry_deviation

__all__ = ["LABEL_SPECS", "LIBRARY", "label_plan", "ConversionReport", "check_crystal",
           "record_point_group", "info_tensor", "read_frames", "finish"]

#: The spec of each label key: the spec library's (``specs/<LIBRARY[key]>.tsym``; a test checks
#: that they agree) under the key's name.  The key is the spec name except ``mu`` (ASE reserves
#: ``dipole`` for calculator results and moves it out of ``atoms.info`` when reading).
LABEL_SPECS = {
    "mu": 'indices i; units "e*Angstrom"',
    "polarizability": 'indices ij; symmetry ij = ji; units "Bohr^3"',
    "dielectric": 'indices ij; symmetry ij = ji; pool mean; units "dimensionless"',
    "dielectric_electronic": 'indices ij; symmetry ij = ji; pool mean; units "dimensionless"',
    "hyperpolarizability": 'indices ijk; symmetry ijk = jik = ikj; units "e^3*Bohr^3/Hartree^2"',
    "second_hyperpolarizability": 'indices ijkl; symmetry ijkl = jikl = ikjl = ijlk; '
                                  'units "e^4*Bohr^4/Hartree^3"',
    "elastic": 'indices ijkl; symmetry ijkl = jikl = ijlk = klij; pool mean; units "GPa"',
    "piezoelectric": 'indices ijk; symmetry ijk = ikj; pool mean; units "C/m^2"',
    "born_charges": 'indices ij; level atom; units "e"',
    "nmr_shielding": 'indices ij; level atom; units "ppm"',
}
#: The file of the spec library each label key's spec restates.
LIBRARY = {"mu": "dipole", "dielectric_electronic": "dielectric"}


@functools.lru_cache(maxsize=None)
def label_plan(key: str) -> HeadPlan:
    """The compiled spec of a label key (:data:`LABEL_SPECS`)."""
    return compile_text(f"tensor {key} {{ {LABEL_SPECS[key]} }}", f"<label {key}>")[0]


@dataclass
class ConversionReport:
    """What a converter read, wrote and dropped, and how symmetric the written tensors are.

    ``dropped[reason]``: ``[(entry, detail)]`` with ``entry`` the 0-based position in the source;
    ``symmetry[key]``: max ``|T - P(T)| / |T|`` over the written tensors, ``P`` the average over
    the key's index permutations (its spec, :data:`LABEL_SPECS`); ``point_group[key]``: checked, passed
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

    def entries(self, items):
        """``(entry, item)`` for each item of the source, each counted in ``n_read``."""
        for entry, item in enumerate(items):
            self.n_read += 1
            yield entry, item

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
    items = [(k, max_operation_deviation(t, ops)) for k, t in tensors.items()]
    for key, (t, mask) in (per_atom or {}).items():
        dev, missing = site_symmetry_deviation(t, ops, mask)
        if missing:  # (operation, atom) pairs whose image is unlabelled: not scored
            name = f"{key}_site_images_unlabelled"
            report.checks[name] = report.checks.get(name, 0) + missing
        items.append((key, dev))
    for key, dev in items:
        record_point_group(report, key, entry, dev, tol)
    return ops


def info_tensor(report: ConversionReport, entry: int, src, key: str, size: int
                ) -> np.ndarray | None:
    """``src.info[key]`` as ``size`` finite float64 numbers, or None (entry dropped and counted)."""
    value = np.asarray(src.info.get(key, []), dtype=np.float64).reshape(-1)
    if value.size != size or not np.isfinite(value).all():
        report.drop(entry, f"missing or bad {key}")
        return None
    return value


def read_frames(path, limit: int | None = None) -> list:
    """The frames of an extended XYZ file (the first ``limit`` of them when given)."""
    return ase.io.read(path, index=":" if limit is None else f":{int(limit)}", format="extxyz")


def finish(report: ConversionReport, frames: list) -> list:
    """Record ``n_written`` and the max index-symmetry deviation of every known label key."""
    report.n_written = len(frames)
    for key in LABEL_SPECS:
        plan = label_plan(key)
        store_of = (lambda a: a.arrays) if plan.level == "atom" else (lambda a: a.info)
        rows = [np.asarray(store_of(a)[key], dtype=np.float64).reshape((-1,) + (3,) * plan.order)
                for a in frames if key in store_of(a)]
        if not rows or plan.group_order == 1:
            continue  # no label, or no index symmetry to check
        t = np.concatenate(rows)  # [rows, 3, ..., 3]
        finite = np.isfinite(t.reshape(len(t), -1)).all(axis=1)  # unlabelled NaN rows out
        if finite.any():
            report.symmetry[key] = symmetry_deviation(plan, t, finite)
    return frames
