"""Labelled structures: extended XYZ in, validated label tensors out.

Extended XYZ (read with ASE) is the one input format of tsym; :mod:`tsym.runtime.data.convert` turns the
public formats into it.  A :class:`LabelSpec` says where a label lives and how it is written::

    LabelSpec(name="elastic", key="C", format="voigt", unit="GPa")  # info["C"]: 36 numbers
    LabelSpec(name="born_charges", key="becs", level="atom")        # arrays["becs"]: [n, 9]

Per-structure tensors live in ``atoms.info``, per-atom tensors in ``atoms.arrays``; ``"flat"`` is
the row-major list of the ``3**n`` Cartesian components.  :func:`read_dataset` returns a
:class:`Dataset` whose records hold float64 tensors ``[3, ..., 3]`` (structure) or
``[n_atoms, 3, ..., 3]`` (atom), plus a ``[n_atoms]`` bool mask per atom-level label: an atom is
unlabelled when its row is all NaN or when a ``<key>_mask`` array says so (its row is then zero).
Bad records raise :class:`~tsym.runtime.errors.DataError` (``FILE:record N: ...``, ``N`` the
0-based frame index) or, with ``on_error="skip"``, are skipped and listed by reason in
``Dataset.report`` (its summary names every skipped record); nothing is dropped silently.  A
frame that cannot be read (a truncated file, an atom count that does not match its atom lines)
is such a record too: the frames before and after it are read (:mod:`tsym.runtime.data.extxyz`).
With ``max_z`` (the model's :attr:`~tsym.runtime.model.TensorModel.max_z`), a record holding an
element the model does not cover is one as well, found before any training.

:func:`collate_records` turns records into a batched graph with ``"label:<name>"`` and
``"mask:<name>"`` fields.  Splits are :mod:`tsym.runtime.data.split`'s, Voigt notation
:mod:`tsym.runtime.data.voigt`'s, and :class:`LabelSpec` lives in :mod:`tsym.runtime.data.labels`.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
import torch

from tsym.runtime import graph as _graph
from tsym.runtime import keys
from tsym.runtime.data.extxyz import read_frames, unreadable_reason
from tsym.runtime.data.records import (Reject, check_elements, check_geometry, check_physics,
                                       parse_label, record_runs, symmetry_deviation)
from tsym.runtime.data.labels import LabelSpec
from tsym.runtime.errors import DataError, LabelSpecError

__all__ = ["Record", "Dataset", "DataReport", "read_dataset", "collate_records"]

# reasons a record is rejected, in the order the checks run
REASONS = ("unreadable frame", "unknown element", "bad structure", "atoms too close",
           "missing key", "not numeric", "wrong length", "non-finite", "overflow", "symmetry",
           "physics")


# ------------------------------------------------------------------------------- records, reports
@dataclass(frozen=True, eq=False)
class Record:
    """One structure and its labels.

    ``labels[name]``: float64 ``[3, ..., 3]`` or ``[n_atoms, 3, ..., 3]`` (unlabelled rows zero);
    ``masks[name]``: ``[n_atoms]`` bool, for atom-level labels only; ``index``: frame in the file.
    """

    atoms: object
    labels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    index: int


@dataclass(frozen=True)
class DataReport:
    """What :func:`read_dataset` read, kept and skipped (by reason), and how symmetric it was.

    ``skipped[reason]`` lists ``(record, message)``; ``max_symmetry_deviation[name]`` is the largest
    ``|T - P(T)| / |T|`` over the kept records (only labels checked against a plan);
    ``elements`` the atomic numbers in the kept records, ascending.

    >>> r = DataReport("a.extxyz", 9, 5, {"atoms too close": [(2, "atoms 0 and 1 are 0.01 "
    ...     "Angstrom apart"), (3, "..."), (4, "..."), (7, "...")]}, elements=(1, 8))
    >>> print(r.summary())
    a.extxyz: 5 of 9 records kept; elements H O
      skipped 4 (atoms too close): records 2-4, 7; first: record 2: atoms 0 and 1 are 0.01 Angstrom apart
    """

    source: str
    n_records: int
    n_kept: int
    skipped: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    max_symmetry_deviation: dict[str, float] = field(default_factory=dict)
    elements: tuple[int, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        return {reason: len(items) for reason, items in self.skipped.items()}

    def summary(self) -> str:
        """One line of counts (and elements), then per reason every skipped record (as runs)."""
        head = f"{self.source}: {self.n_kept} of {self.n_records} records kept"
        if self.elements:
            head += "; elements " + " ".join(chemical_symbols[z] for z in self.elements)
        lines = [head]
        for reason, items in self.skipped.items():
            record, message = items[0]
            lines.append(f"  skipped {len(items)} ({reason}): records "
                         f"{record_runs([k for k, _ in items])}; first: record {record}: {message}")
        for name, dev in self.max_symmetry_deviation.items():
            lines.append(f"  {name}: max relative symmetry deviation {dev:.3g}")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Dataset(Sequence):
    """A list-like of :class:`Record`, with the label specs and the :class:`DataReport`."""

    records: tuple[Record, ...]
    labels: tuple[LabelSpec, ...]
    source: str
    report: DataReport

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return self.subset(range(len(self))[k])
        return self.records[k]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def subset(self, indices: Sequence[int]) -> Dataset:
        """The records at ``indices`` (positions in this dataset, e.g. a split)."""
        return Dataset(tuple(self.records[int(i)] for i in indices), self.labels, self.source,
                       self.report)


def _check_plan(spec: LabelSpec, plan, source: str) -> LabelSpec:
    if plan.level != spec.level:
        raise LabelSpecError(f"{source}: label {spec.name!r} has level {spec.level!r} but the "
                             f"spec {plan.name!r} has level {plan.level!r}")
    if spec.order is not None and spec.order != plan.order:
        raise LabelSpecError(f"{source}: label {spec.name!r} has order {spec.order} but the "
                             f"spec {plan.name!r} has order {plan.order}")
    if spec.format == "voigt" and plan.order not in (3, 4):
        raise LabelSpecError(f"{source}: label {spec.name!r}: Voigt form needs order 3 or 4, "
                             f"the spec has order {plan.order}")
    return spec.with_order(plan.order)


def read_dataset(path: str | Path, labels: Sequence[LabelSpec | Mapping] | LabelSpec,
                 plans: Mapping[str, object] | None = None, on_error: str = "fail",
                 symmetry_tol: float = 1e-3, *, max_z: int | None = None,
                 verbose: bool = True, max_abs: float | None = None) -> Dataset:
    """Read an extended XYZ file, validate every record, and return a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
    labels : sequence of LabelSpec (or mappings with its fields)
    plans : dict name -> HeadPlan, optional
        When a label's name has a plan, its level and order must agree with the plan, and each
        tensor must keep the plan's symmetries: ``|T - P(T)| / |T| <= symmetry_tol`` with
        ``P(T) = plan.to_cartesian(plan.from_cartesian(T))``.
    on_error : {"fail", "skip"}
        ``"fail"``: the first bad record raises :class:`DataError`.  ``"skip"``: bad records are
        left out, listed by reason in ``report`` (a summary goes to stderr when ``verbose``).
    symmetry_tol : float
    max_z : int, optional
        The largest atomic number the model covers: a record holding another element (or
        atomic number 0) is a bad record (``"unknown element"``, naming the atom and element).
    max_abs : float, optional
        The largest label magnitude (after ``scale``) the model's float type holds, e.g.
        ``torch.finfo(torch.float32).max``: larger ones would turn into inf.

    Raises
    ------
    DataError
        ``FILE:record N: ...`` for a bad record (``N`` is the 0-based frame index): a frame that
        cannot be read (truncated, wrong atom count), an element beyond ``max_z``, missing key,
        wrong number of values, not numeric, NaN/inf outside masked rows, a value above
        ``max_abs``, a broken symmetry
        (with the deviation), atoms closer than 0.1 Angstrom, a singular periodic cell; or
        ``FILE: ...`` when the file cannot be read at all.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    source = str(path)
    specs = [labels] if isinstance(labels, LabelSpec) else list(labels)
    specs = [s if isinstance(s, LabelSpec) else LabelSpec.from_dict(s) for s in specs]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise LabelSpecError(f"{source}: duplicate label names in {names}")
    plans = dict(plans or {})
    specs = [_check_plan(s, plans[s.name], source) if s.name in plans else s for s in specs]
    frames, unreadable = _read_frames(source)
    if unreadable and on_error == "fail":
        raise DataError(source, unreadable[0][0], unreadable[0][1],
                        "repair or remove that frame, or skip it (data: {on_error: skip})")
    orders = {s.name: s.order for s in specs}
    records, skipped = [], {"unreadable frame": list(unreadable)} if unreadable else {}
    max_dev: dict[str, float] = {}
    for index, atoms in frames:
        try:
            if max_z is not None:
                check_elements(atoms, max_z)
            check_geometry(atoms)
            values, masks, devs = {}, {}, {}
            for spec in specs:
                tensor, mask, orders[spec.name] = parse_label(atoms, spec, orders[spec.name],
                                                              max_abs)
                values[spec.name] = tensor
                if mask is not None:
                    masks[spec.name] = mask
                if spec.name in plans:
                    dev = symmetry_deviation(plans[spec.name], tensor, mask)
                    if dev > symmetry_tol:
                        raise Reject("symmetry", f"label {spec.name!r} breaks the symmetry of "
                                     f"spec {spec.name!r}: relative deviation {dev:.3g} > "
                                     f"{symmetry_tol:g}", "symmetrize the labels (keep "
                                     "their symmetric part): the tolerance is a relative "
                                     f"{symmetry_tol:g}, not a setting of the training config")
                    check_physics(plans[spec.name], spec.name, tensor, mask)
                    devs[spec.name] = dev
        except Reject as err:
            if on_error == "fail":
                raise DataError(source, index, err.message, err.hint) from None
            skipped.setdefault(err.reason, []).append((index, err.message))
            continue
        for name, dev in devs.items():
            max_dev[name] = max(max_dev.get(name, 0.0), dev)
        records.append(Record(atoms, values, masks, index))
    ordered = {r: skipped[r] for r in REASONS if r in skipped}
    elements = sorted({int(z) for rec in records for z in np.unique(rec.atoms.numbers)})
    report = DataReport(source, len(frames) + len(unreadable), len(records), ordered, max_dev,
                        tuple(elements))
    if verbose and ordered:
        print(report.summary(), file=sys.stderr)
    specs = [s.with_order(orders[s.name]) if orders[s.name] is not None else s for s in specs]
    return Dataset(tuple(records), tuple(specs), source, report)


def _read_frames(source: str) -> tuple[list, list[tuple[int, str]]]:
    """``([(frame index, Atoms)], [(frame index, why unreadable)])`` of an extxyz file."""
    if not Path(source).is_file():
        raise DataError(source, None, "is a folder, not a data file" if Path(source).is_dir()
                        else "no such file", "give the path of an extended XYZ file"
                        if Path(source).is_dir() else None)
    plainly_not = unreadable_reason(source)
    if plainly_not:
        raise DataError(source, None, *plainly_not)
    try:
        frames, bad = read_frames(source)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(source, None, f"cannot read as extended XYZ ({type(err).__name__}: "
                        f"{err})", "convert the file first: tsym data convert ...") from None
    if bad and not frames:
        raise DataError(source, None, f"cannot read as extended XYZ (no frame can be read; "
                        f"frame {bad[0][0]}: {bad[0][1]})",
                        "convert the file first: tsym data convert ...")
    return frames, bad


# ------------------------------------------------------------------------------------ graphs
def collate_records(records: Sequence[Record], cutoff: float, dtype: torch.dtype = torch.float64,
                    *, source: str = "<records>", neighbour_backend: str = "auto"
                    ) -> dict[str, torch.Tensor]:
    """A batched graph (:func:`tsym.runtime.graph.batch_graphs`) with the records' labels.

    Adds, for each label name of the records:

    * ``"label:<name>"``: ``[G, 3, ..., 3]`` (structure level) or ``[N, 3, ..., 3]`` (atom level),
      in ``dtype``; unlabelled atoms hold zeros;
    * ``"mask:<name>"``: ``[N]`` bool, atom-level labels only (True where the atom is labelled).

    Every record must carry the same label names.  Graph errors name ``source`` and the record's
    frame index.
    """
    records = list(records)
    if not records:
        raise ValueError("collate_records needs at least one record")
    graphs = []
    for rec in records:
        g = _graph.atoms_to_graph(rec.atoms, cutoff, dtype, neighbour_backend=neighbour_backend,
                                  source=source, record=rec.index)
        for name, tensor in rec.labels.items():
            t = torch.as_tensor(tensor, dtype=dtype)
            g[keys.label(name)] = t if name in rec.masks else t.unsqueeze(0)  # [n or 1, 3, ..., 3]
        for name, mask in rec.masks.items():
            g[keys.mask(name)] = torch.as_tensor(mask, dtype=torch.bool)  # [n]
        graphs.append(g)
    return _graph.batch_graphs(graphs)
