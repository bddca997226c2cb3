"""``check_equivariance``: rotate and reflect the inputs of a model, report the error per head.

One call tells whether a model (or a backbone with its heads, or any function of structures)
is equivariant: the structures are moved by a random rotation, the same rotation times -1
(a reflection), a translation and a permutation of the atoms (positions and cell alike; the
transformations of :func:`tsym.runtime.equivariance.equivariance_errors`), and the Cartesian output of
each head is compared with the rotated output (axial tensors pick up ``det R``).  A wrong irreps
layout -- node features whose blocks are declared in another order than the network writes them
-- gives an error of the order of the output itself; a right one, rounding.

Examples
--------
>>> import tsym
>>> from ase.build import molecule
>>> model = tsym.build_model(["tensor alpha { indices ij; symmetry ij = ji }"],
...     dtype=torch.float64, backbone_kwargs=dict(num_scalars=8, irreps="8x0e+4x1o+2x2e",
...     num_blocks=1, embedding="onehot"), head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
>>> report = check_equivariance(model, molecule("CH3OH"))
>>> report.ok, report["alpha"].relative < 1e-12
(True, True)
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from tsym.runtime import keys
from tsym.runtime.errors import ModelConfigError
from tsym.runtime.graph import collate
from tsym.runtime.equivariance._check import equivariance_errors

__all__ = ["HeadEquivariance", "EquivarianceReport", "check_equivariance"]


@dataclass(frozen=True)
class HeadEquivariance:
    """The equivariance error of one output: the largest ``|f(g x) - g.f(x)|`` over the
    transformations ``g`` (``error``), the largest ``|g.f(x)|`` (``scale``) and the ``g`` with the
    largest error (``worst``)."""

    name: str
    order: int
    axial: bool
    atom_level: bool | None  # None: a function's output, per atom or not by its rows
    error: float
    scale: float
    worst: str

    @property
    def relative(self) -> float:
        """``error / scale`` (0 for an output that is zero and stays zero)."""
        if self.scale > 0:
            return self.error / self.scale
        return 0.0 if self.error == 0 else math.inf


@dataclass(frozen=True)
class EquivarianceReport:
    """Per output, its :class:`HeadEquivariance`; ``ok`` when every relative error is at most
    ``tolerance`` (default ``sqrt(eps)`` of the model's dtype: 3.5e-4 in float32, 1.5e-8 in
    float64, far above rounding and far below the O(1) error of a wrong layout or parity)."""

    heads: tuple[HeadEquivariance, ...]
    dtype: str
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(h.relative <= self.tolerance for h in self.heads)

    def __getitem__(self, name: str) -> HeadEquivariance:
        for head in self.heads:
            if head.name == name:
                return head
        raise KeyError(f"no output {name!r}; outputs: {[h.name for h in self.heads]}")

    def __str__(self) -> str:
        lines = [f"equivariance ({self.dtype}, relative tolerance {self.tolerance:.2g}):"]
        for h in self.heads:
            verdict = ("ok" if h.relative <= self.tolerance
                       else f"NOT EQUIVARIANT (worst: {h.worst})")
            kind = "axial" if h.axial else "polar"
            lines.append(f"  {h.name}: order {h.order} {kind}, relative error {h.relative:.2e} "
                         f"(max {h.error:.2e} of {h.scale:.2e})  {verdict}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Output:
    order: int
    axial: bool
    atom_level: bool | None  # None: told by the number of rows


def _structures(structures) -> list[Atoms]:
    """``ase.Atoms``, a list of them, or a graph dict (:mod:`tsym.runtime.keys`) -> Atoms."""
    if isinstance(structures, Atoms):
        return [structures]
    if isinstance(structures, Mapping):
        return _atoms_from_graph(structures)
    out = list(structures)
    if not out or not all(isinstance(a, Atoms) for a in out):
        raise ModelConfigError("check_equivariance needs ase.Atoms, a non-empty list of them, or "
                               "a graph dict")
    return out


def _atoms_from_graph(graph: Mapping[str, torch.Tensor]) -> list[Atoms]:
    positions = graph[keys.POSITIONS].detach().cpu().double().numpy()  # [N, 3]
    numbers = graph[keys.ATOMIC_NUMBERS].cpu().numpy()  # [N]
    batch = graph.get(keys.BATCH)
    batch = np.zeros(len(numbers), dtype=int) if batch is None else batch.cpu().numpy()
    count = int(batch.max()) + 1 if len(batch) else 0
    cells = graph.get(keys.CELL)
    pbcs = graph.get(keys.PBC)
    out = []
    for g in range(count):
        rows = batch == g
        cell = np.zeros((3, 3)) if cells is None else cells[g].detach().cpu().double().numpy()
        pbc = cell.any(axis=1) if pbcs is None else pbcs[g].cpu().numpy()
        out.append(Atoms(numbers=numbers[rows], positions=positions[rows], cell=cell, pbc=pbc))
    return out


def _polar_parity(order: int) -> int:
    return 1 if order % 2 == 0 else -1


def _head_output(head: torch.nn.Module) -> _Output:
    order = len(getattr(head, "cart_shape", ()))
    irreps = getattr(head, "irreps_out", None)
    if irreps is None or not hasattr(head, "is_atom"):
        raise ModelConfigError(f"{type(head).__name__} is not a tsym head (no irreps_out, "
                               "cart_shape, is_atom)")
    axial = irreps[0].ir.p != _polar_parity(order)  # a polar rank-n tensor has parity (-1)^n
    return _Output(order, bool(axial), bool(head.is_atom))


def _param_dtype(module: torch.nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _backbone_and_heads(backbone: torch.nn.Module, heads, cutoff: float | None):
    """``fn`` and the outputs for a backbone with one head or ``{name: head}``."""
    if not isinstance(heads, Mapping):
        heads = {"head": heads}
    outputs = {name: _head_output(head) for name, head in heads.items()}
    cutoff = getattr(backbone, "cutoff", None) if cutoff is None else cutoff
    if cutoff is None:
        raise ModelConfigError(f"backbone {type(backbone).__name__} has no cutoff: pass "
                               "check_equivariance(..., cutoff=...)")
    dtype = _param_dtype(next(iter(heads.values())))

    @torch.no_grad()
    def fn(structures: list[Atoms]) -> dict[str, torch.Tensor]:
        graph = collate(structures, float(cutoff), dtype)
        out = backbone(graph)
        features = out[keys.NODE_FEATURES]  # [N, irreps.dim]
        batch, n = graph[keys.BATCH], len(structures)
        return {name: head(features, batch, n) for name, head in heads.items()}

    return fn, outputs, dtype


def _output_dtype(fn: Callable, structures: list[Atoms]) -> torch.dtype:
    value = next(iter(fn(structures).values()))
    if isinstance(value, torch.Tensor):
        return value.dtype
    return torch.float64 if np.asarray(value).dtype == np.float64 else torch.float32


def check_equivariance(model, structures, *, orders: Mapping[str, int] | None = None,
                       axial: Mapping[str, bool] | None = None, parity: bool = True,
                       seed: int = 0, tolerance: float | None = None,
                       cutoff: float | None = None) -> EquivarianceReport:
    """Rotate, reflect, translate and permute ``structures``; report the error of each output.

    Parameters
    ----------
    model
        A model of ``tsym.build_model`` (or a checkpoint's); a pair ``(backbone, head)`` or
        ``(backbone, {name: head})`` (tsym heads, the library's or emitted ones, on any backbone
        that meets the contract); or a function ``fn(list of ase.Atoms) -> {name: array}`` of
        Cartesian outputs, then with ``orders`` (and ``axial`` for pseudotensors).
    structures
        ``ase.Atoms``, a list of them, or a graph dict (``tsym.runtime.keys``): positions and
        cell are rotated together, so crystals are checked as well as molecules.
    orders, axial
        Only for a plain function: the number of Cartesian indices of each output, and which
        outputs pick up ``det R``.
    parity
        Also reflect (improper rotations); False for a model meant to be chiral.
    seed
        Seeds the rotation, translations and permutations.
    tolerance
        Relative error below which an output counts as equivariant; default ``sqrt(eps)`` of the
        model's dtype.
    cutoff
        Graph radius for a ``(backbone, head)`` pair whose backbone has no ``cutoff``.

    Returns
    -------
    EquivarianceReport
        Printable; ``report.ok``, ``report[name].relative``.
    """
    atoms = _structures(structures)
    if isinstance(model, tuple) and len(model) == 2:
        fn, outputs, dtype = _backbone_and_heads(model[0], model[1], cutoff)
    elif hasattr(model, "plans") and hasattr(model, "predict"):
        plans = list(model.plans.values() if isinstance(model.plans, Mapping) else model.plans)
        outputs = {p.name: _Output(p.order, p.parity == "axial", p.level == "atom")
                   for p in plans}
        fn, dtype = model.predict, model.dtype
    elif callable(model):
        if not orders:
            raise ModelConfigError("check_equivariance of a plain function needs orders= (the "
                                   "number of Cartesian indices of each output)")
        axial = dict(axial or {})
        outputs = {name: _Output(int(order), bool(axial.get(name, False)), None)
                   for name, order in orders.items()}
        fn, dtype = model, _output_dtype(model, atoms)
    else:
        raise ModelConfigError(f"check_equivariance needs a tsym model, a (backbone, head) pair "
                               f"or a function of structures, got {type(model).__name__}")
    levels = {n: o.atom_level for n, o in outputs.items() if o.atom_level is not None}
    errors = equivariance_errors(fn, atoms, {n: o.order for n, o in outputs.items()},
                                 {n: o.axial for n, o in outputs.items()}, atom_level=levels,
                                 parity=parity, seed=seed)
    heads = []
    for name, out in outputs.items():
        worst = max(errors[name], key=lambda t: errors[name][t][0])
        heads.append(HeadEquivariance(
            name, out.order, out.axial, levels.get(name), max(e for e, _ in errors[name].values()),
            max(s for _, s in errors[name].values()), worst))
    if tolerance is None:
        tolerance = math.sqrt(torch.finfo(dtype).eps)
    return EquivarianceReport(tuple(heads), str(dtype).removeprefix("torch."), float(tolerance))
