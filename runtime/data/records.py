"""Validation of one extxyz record: geometry, label parsing (flat/Voigt, masks), symmetry.

Each check raises :class:`Reject` with a reason (one of ``data.REASONS``) and a message;
:func:`tsym.runtime.data.read_dataset` turns it into a ``DataError`` or a counted skip.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tsym.runtime import graph as _graph
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.data.voigt import voigt_to_tensor3, voigt_to_tensor4
from tsym.runtime.errors import DataError

__all__ = ["Reject", "record_runs", "check_elements", "check_geometry", "parse_label",
           "symmetry_deviation", "check_physics", "PHYSICS_TOL", "VOIGT_SHAPES"]

VOIGT_SHAPES = {4: (6, 6), 3: (3, 6)}
LISTED_RUNS = 30  # a skip summary lists this many runs of record numbers, then a count
_FROM_VOIGT = {4: voigt_to_tensor4, 3: voigt_to_tensor3}


class Reject(Exception):
    """A record fails a check: ``reason`` (for counting), ``message``, optional ``hint``."""

    def __init__(self, reason: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.reason, self.message, self.hint = reason, message, hint


def record_runs(indices) -> str:
    """Record numbers as runs: ``[2, 3, 4, 7]`` -> ``"2-4, 7"``; after :data:`LISTED_RUNS`
    runs, a count of the rest.

    >>> record_runs([7, 2, 3, 4]), record_runs(range(0, 100, 2))[-24:]
    ('2-4, 7', '54, 56, 58, and 20 more')
    """
    runs: list[list[int]] = []
    for k in sorted(int(i) for i in indices):
        if runs and k == runs[-1][1] + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:LISTED_RUNS]]
    if len(runs) > LISTED_RUNS:
        text.append(f"and {sum(b - a + 1 for a, b in runs[LISTED_RUNS:])} more")
    return ", ".join(text)


def check_elements(atoms, max_z: int) -> None:
    """Every atomic number in ``1..max_z`` (the elements the model covers)."""
    problem = _graph.element_problem(atoms.numbers, max_z)
    if problem:
        raise Reject("unknown element", problem, _graph.ELEMENT_HINT)


def check_geometry(atoms) -> None:
    """The checks of :func:`tsym.runtime.graph.check_structure` and ``check_distances`` (no
    atoms, non-finite positions, a singular periodic cell, atoms closer than 0.1 A), as a
    :class:`Reject` with the check's reason."""
    try:
        positions, cell, pbc = _graph.check_structure(atoms)
        i, j, _, d = _graph.neighbour_list(positions, cell, pbc, _graph.MIN_DISTANCE)
        _graph.check_distances(i, j, d)
    except DataError as err:
        raise Reject(err.reason, err.message, err.hint) from None


def _raw_value(atoms, spec: LabelSpec):
    store = atoms.arrays if spec.level == "atom" else atoms.info
    if spec.key in store:
        return store[spec.key]
    calc = getattr(atoms, "calc", None)  # ASE moves e.g. "dipole" into a SinglePointCalculator
    results = getattr(calc, "results", None) or {}
    if spec.key in results:
        return results[spec.key]
    where = "atoms.arrays (per-atom columns)" if spec.level == "atom" else "atoms.info"
    other, other_level = (atoms.info, "structure") if spec.level == "atom" else (atoms.arrays,
                                                                                 "atom")
    if spec.key in other:  # the key is there, at the other level
        found = "atoms.info (one value per structure)" if spec.level == "atom" else \
            "atoms.arrays (a per-atom column)"
        raise Reject("missing key", f"label {spec.name!r}: key {spec.key!r} is in {found}, but "
                     f"the spec {spec.name!r} is level {spec.level}, read from {where}",
                     f"use a spec with 'level {other_level}' for this key, or another key")
    raise Reject("missing key", f"label {spec.name!r}: key {spec.key!r} not found in {where}")


def _expected_size(spec: LabelSpec, order: int) -> int:
    if spec.format == "voigt":
        return int(np.prod(VOIGT_SHAPES[order]))
    return 3 ** order


def _infer_order(spec: LabelSpec, size: int) -> int | None:
    if spec.format == "voigt":
        return {36: 4, 18: 3}.get(size)
    order = round(math.log(size, 3)) if size > 0 else -1
    return order if order >= 0 and 3 ** order == size else None


def parse_label(atoms, spec: LabelSpec, order: int | None, max_abs: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Label tensor (float64, scaled, masked rows zero), mask or None, and the order.

    ``max_abs``: the largest magnitude the model's dtype holds (scaled labels above it would
    become inf when cast, e.g. ``np.finfo(np.float32).max``); None: no limit beyond float64.
    """
    raw = _raw_value(atoms, spec)
    try:
        values = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise Reject("not numeric", f"label {spec.name!r}: key {spec.key!r} holds "
                     f"{str(raw)[:60]!r}, not numbers") from None
    n = len(atoms)
    rows = values.reshape(n, -1) if spec.level == "atom" else values.reshape(1, -1)
    if order is None:
        order = _infer_order(spec, rows.shape[1])
        if order is None:
            raise Reject("wrong length", f"label {spec.name!r}: {rows.shape[1]} numbers per "
                         f"{spec.level} is no {spec.format} tensor")
    size = _expected_size(spec, order)
    if rows.shape[1] != size:
        what = f"{VOIGT_SHAPES[order]} Voigt" if spec.format == "voigt" else f"order-{order} flat"
        raise Reject("wrong length", f"label {spec.name!r}: expected {size} numbers per "
                     f"{spec.level} ({what}), got {rows.shape[1]}")
    mask = None
    if spec.level == "atom":
        finite = np.isfinite(rows).all(axis=1)
        mask_key = f"{spec.key}_mask"
        if mask_key in atoms.arrays:
            mask = np.asarray(atoms.arrays[mask_key]).reshape(n).astype(bool)
        else:
            mask = finite | ~np.isnan(rows).all(axis=1)  # all-NaN rows are unlabelled
        rows = np.where(mask[:, None], rows, 0.0)
        bad = np.flatnonzero(mask & ~finite)
        if bad.size:
            raise Reject("non-finite", f"label {spec.name!r}: atom {bad[0]} has non-finite "
                         f"values (NaN rows are unlabelled only when the whole row is NaN "
                         f"and no {mask_key!r} array marks it labelled)")
    elif not np.isfinite(rows).all():
        raise Reject("non-finite", f"label {spec.name!r}: non-finite values")
    rows = rows * spec.scale
    if max_abs is not None and rows.size and np.abs(rows).max() > max_abs:
        flat = int(np.argmax(np.abs(rows)))
        where = f"atom {flat // rows.shape[1]} " if spec.level == "atom" else ""
        raise Reject("overflow", f"label {spec.name!r}: {where}value {rows.flat[flat]:.6g} "
                     f"(after scale {spec.scale:g}) overflows the model's float type (largest "
                     f"magnitude {max_abs:.6g})", "check the units and the scale, or train "
                     "in float64 (model: {dtype: float64})")
    if spec.format == "voigt":
        tensor = _FROM_VOIGT[order](rows.reshape((-1,) + VOIGT_SHAPES[order]))
    else:
        tensor = rows.reshape((-1,) + (3,) * order)
    return (tensor if spec.level == "atom" else tensor[0]), mask, order


def symmetry_deviation(plan, tensor: np.ndarray, mask: np.ndarray | None) -> float:
    """max over rows of ``|T - P(T)| / |T|``, ``P = to_cartesian o from_cartesian``."""
    t = torch.from_numpy(np.ascontiguousarray(tensor))
    if mask is not None:
        t = t[torch.from_numpy(mask)]  # [n_labelled, 3, ..., 3]
    if t.numel() == 0:
        return 0.0
    t = t.reshape((-1,) + (3,) * plan.order)  # [rows, 3, ..., 3]
    p = plan.to_cartesian(plan.from_cartesian(t))  # [rows, 3, ..., 3]
    num = (t - p).flatten(1).norm(dim=1)
    den = t.flatten(1).norm(dim=1)
    rel = torch.where(den > 0, num / den.clamp_min(1e-300), num)  # [rows]
    return float(rel.max())


#: A label is rejected when it breaks its spec's ``sum_rule zero`` or ``positive`` clause by more
#: than this, relative to its size: far above DFT noise (an acoustic sum rule violated by 0.5 e
#: over 10 atoms with charges ~2.5 e is 0.02), far below a wrong property or sign (about 1).
PHYSICS_TOL = 0.05


def check_physics(plan, name: str, tensor: np.ndarray, mask: np.ndarray | None) -> None:
    """Raise :class:`Reject` (reason ``"physics"``) when label ``name`` breaks ``plan``'s
    physics clauses by more than :data:`PHYSICS_TOL`, naming the clause, the atom or structure
    and the deviation.

    * ``sum_rule zero``: ``|sum_a T_a| / sum_a |T_a|`` (Frobenius norms; only when every atom is
      labelled);
    * ``positive``: the most negative eigenvalue of ``T`` as a symmetric ``[3^(n/2), 3^(n/2)]``
      matrix (first half of the indices against the second), over the largest ``|eigenvalue|``.
      ``definite`` is checked as ``semidefinite``: a zero eigenvalue of a tensor with pair
      symmetries (elastic) is a direction its symmetry removes, not a violation.
    """
    t = np.asarray(tensor, dtype=np.float64)
    rows = t.reshape((-1,) + (3,) * plan.order)  # [rows, 3, ..., 3]
    if getattr(plan, "sum_rule", None) == "zero" and (mask is None or bool(np.all(mask))):
        total = float(np.linalg.norm(rows.sum(axis=0)))
        size = float(sum(np.linalg.norm(r) for r in rows))
        dev = total / size if size > 0 else 0.0
        if dev > PHYSICS_TOL:
            raise Reject("physics", f"label {name!r} breaks the spec's 'sum_rule zero': its "
                         f"{len(rows)} atom tensors sum to a tensor of norm {total:.4g}, {dev:.3g} "
                         f"of their total norm (> {PHYSICS_TOL:g})",
                         "check the key and the data (the sum over the atoms must vanish), or "
                         "use a spec without the sum_rule clause")
    if getattr(plan, "positive", None) is not None and plan.order % 2 == 0:
        d = 3 ** (plan.order // 2)
        picked = rows if mask is None else rows[np.asarray(mask, dtype=bool)]
        for k, r in enumerate(picked):
            m = r.reshape(d, d)
            w = np.linalg.eigvalsh((m + m.T) / 2)  # [d], ascending
            scale = float(np.abs(w).max())
            dev = max(0.0, -float(w[0])) / scale if scale > 0 else 0.0
            if dev > PHYSICS_TOL:
                where = f"atom {int(np.flatnonzero(mask)[k]) if mask is not None else k}: " \
                    if plan.level == "atom" else ""
                raise Reject("physics", f"label {name!r} breaks the spec's 'positive "
                             f"{plan.positive}': {where}eigenvalue {float(w[0]):.4g} (relative "
                             f"{dev:.3g} below zero, > {PHYSICS_TOL:g})",
                             "check the sign convention of the data, or use a spec without the "
                             "positive clause")
