"""Export a model to one TorchScript file that loads with ``torch.jit.load`` alone (no tsym, e3nn).

The exported module takes the graph as plain tensors, in this order (:data:`INPUTS`; shapes as in
:mod:`tsym.runtime.keys`, floats in the model's dtype, see the ``dtype`` of the metadata)::

    positions       [N, 3]     float, Angstrom
    atomic_numbers  [N]        long
    edge_index      [2, E]     long; row 0 = neighbour j (source), row 1 = centre i (target)
    edge_shifts     [E, 3]     float, integer image shifts S: r_ij = r_j - r_i + S @ cell[batch[i]]
    cell            [G, 3, 3]  float, rows are lattice vectors (zeros for molecules)
    batch           [N]        long, structure index of each atom
    num_graphs      []         long, G

and returns ``{spec name: tensor}``, ``[G, 3, ..., 3]`` (structure level) or ``[N, 3, ..., 3]``
(atom level), in data units: a trained model's de-normalisation is built in.  Its parameters do
not require grad, so the outputs need no ``torch.no_grad()`` before ``.numpy()``; with
``positions.requires_grad_()`` they do, and ``torch.autograd.grad`` gives position derivatives
(the APTs of a dipole head, as :func:`tsym.derivatives`).  Every pair of atoms
closer than the ``cutoff`` of the metadata must be an edge, in both directions
(:func:`graph_inputs` builds exactly the graphs tsym trains on).

How: the heads and the wrapper are ``torch.jit.script``-ed; the backbone is
``torch.jit.trace``-d, because XPaiNN's forward iterates over e3nn ``Irreps`` and checks the
atomic numbers with a data-dependent Python branch, which neither ``torch.jit.script`` nor
``torch.export`` accept (the check is redone in the scripted wrapper).  Tracing records the
operations for one example; :func:`export_model` then runs the exported module on a second
example of other sizes and compares it with the model (:class:`ExportError` if they differ).

Metadata (JSON, ``tsym.json`` inside the file; :func:`load_exported` returns it): format,
inputs, dtype, cutoff, max_z, and per head: name, level, order, irreps, units, spec source.

>>> export_model(load_model("runs/alpha"), "alpha.pt")                       # doctest: +SKIP
>>> module, meta = load_exported("alpha.pt")                                  # doctest: +SKIP
>>> module(*graph_inputs([molecule("H2O")], meta["cutoff"], torch.float32))  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from ase import Atoms

from tsym.runtime import keys
from tsym.runtime.errors import ExportError
from tsym.runtime.graph import collate
from tsym.runtime.inference.predict import check_finite, model_plans
from tsym.runtime.model import TrainedModel

__all__ = ["INPUTS", "EXPORT_FORMAT", "export_model", "load_exported",
           "graph_inputs"]

EXPORT_FORMAT = "tsym-export/1"
INPUTS = (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.EDGE_INDEX, keys.EDGE_SHIFTS, keys.CELL,
          keys.BATCH, keys.NUM_GRAPHS)
_META = "tsym.json"


def graph_inputs(structures: Atoms | Sequence[Atoms], cutoff: float,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The positional inputs (:data:`INPUTS`) of an exported module for ``structures``."""
    graph = collate(structures, cutoff, dtype)
    return tuple(graph[name] for name in INPUTS)


class _Backbone(torch.nn.Module):
    """The backbone as a function of the graph tensors -> NODE_FEATURES (what gets traced)."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, positions, atomic_numbers, edge_index, edge_shifts, cell, batch):
        graph = {keys.POSITIONS: positions, keys.ATOMIC_NUMBERS: atomic_numbers,
                 keys.EDGE_INDEX: edge_index, keys.EDGE_SHIFTS: edge_shifts, keys.CELL: cell,
                 keys.BATCH: batch}
        return self.backbone(graph)[keys.NODE_FEATURES]  # [N, irreps_out.dim]


class _Denormalise(torch.nn.Module):
    """Raw head output -> data units, exactly as ``TrainedModel.forward`` does it:
    ``T = to_cartesian(denormalise(from_cartesian(raw)))``."""

    def __init__(self, q: torch.Tensor, shift, scale, per_atom: bool, order: int,
                 dtype: torch.dtype):
        super().__init__()
        self.register_buffer("q", q.reshape(q.shape[0], -1).to(dtype))  # [d, 3^n]
        self.register_buffer("shift", torch.tensor(shift, dtype=dtype))  # [d]
        self.register_buffer("scale", torch.tensor(scale, dtype=dtype))  # [d]
        self.per_atom = per_atom
        self.shape: List[int] = [3] * order

    def forward(self, raw: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
        m = raw.shape[0]
        y = raw.reshape(m, -1) @ self.q.t()  # [M, d]
        if self.per_atom:
            y = y * self.scale + n_atoms.to(y.dtype)[:, None] * self.shift  # [M, d]
        else:
            y = y * self.scale + self.shift  # [M, d]
        return (y @ self.q).reshape([m] + self.shape)  # [M, 3, ..., 3]


class _Exported(torch.nn.Module):
    def __init__(self, backbone, heads: torch.nn.ModuleDict, denorm: torch.nn.ModuleDict,
                 max_z: int):
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.denorm = denorm
        self.max_z = max_z

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                edge_index: torch.Tensor, edge_shifts: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor, num_graphs: torch.Tensor) -> Dict[str, torch.Tensor]:
        if atomic_numbers.numel() > 0:
            if int(atomic_numbers.min()) < 1 or int(atomic_numbers.max()) > self.max_z:
                raise ValueError("an atomic number is outside the range the model embeds")
        features = self.backbone(positions, atomic_numbers, edge_index, edge_shifts, cell,
                                 batch)  # [N, irreps.dim]
        g = int(num_graphs)
        ones = torch.ones_like(batch)
        n_atoms = torch.zeros(g, dtype=batch.dtype, device=batch.device).index_add_(
            0, batch, ones)  # [G]
        out: Dict[str, torch.Tensor] = {}
        for name, head in self.heads.items():
            out[name] = head(features, batch, g)
        for name, denorm in self.denorm.items():
            out[name] = denorm(out[name], n_atoms)
        return out


def _examples(max_z: int, elements=None) -> tuple[list[Atoms], list[Atoms]]:
    """Two small batches of other sizes (molecules and crystals), elements <= max_z (or, for a
    backbone that lists its ``elements``, such as MACE's, elements among those)."""
    z1, z2, z3 = 1, min(6, max_z), min(8, max_z)
    if elements:
        z1, z2, z3 = (int(elements[i % len(elements)]) for i in range(3))
    mol = Atoms(numbers=[z2, z1, z1, z3], positions=[[0, 0, 0], [1.0, 0.1, 0], [-0.3, 1.0, 0.2],
                                                    [0.1, -0.2, 1.3]])
    crystal = Atoms(numbers=[z2, z3], cell=[[2.9, 0, 0], [0.3, 3.1, 0], [0.2, 0.4, 3.3]],
                    scaled_positions=[[0, 0, 0], [0.45, 0.55, 0.5]], pbc=True)
    slab = Atoms(numbers=[z1, z2, z3], cell=[[3.0, 0, 0], [0, 3.2, 0], [0, 0, 0]],
                 positions=[[0, 0, 0], [1.2, 0.4, 0.6], [0.3, 1.5, 1.4]], pbc=[True, True, False])
    return [mol, crystal], [crystal.repeat((2, 1, 1)), slab, mol[:3], mol]


def _compare(exported, model, structures, cutoff, dtype) -> float:
    """Largest difference, relative to each output's largest entry."""
    inputs = graph_inputs(structures, cutoff, dtype)
    device = next(model.parameters()).device
    inputs = tuple(t.to(device) for t in inputs)
    graph = {name: t for name, t in zip(INPUTS, inputs)}
    graph[keys.NUM_ATOMS] = torch.bincount(graph[keys.BATCH], minlength=len(structures))
    graph[keys.PBC] = torch.as_tensor(np.array([a.pbc for a in structures]), device=device)
    with torch.no_grad():
        want = model(graph)
        got = exported(*inputs)
    worst = 0.0
    for name, w in want.items():
        if name not in got or got[name].shape != w.shape:
            return float("inf")
        scale = max(float(w.abs().max()), 1e-30)
        worst = max(worst, float((got[name] - w).abs().max()) / scale)
    return worst


def _build(model, net, plans, trace_on, max_z: int) -> torch.jit.ScriptModule:
    """Trace the backbone on ``trace_on``, script the heads, the de-normalisation, the wrapper."""
    dtype = net.dtype
    inputs = tuple(t.to(net.device) for t in graph_inputs(trace_on, net.cutoff, dtype))
    try:
        prepare = getattr(net.backbone, "for_export", None)  # a copy that traces faithfully
        backbone = torch.jit.trace(_Backbone(prepare() if prepare else net.backbone),
                                   inputs[:-1], check_trace=False)
        heads = torch.nn.ModuleDict({n: torch.jit.script(h) for n, h in net.heads.items()})
    except Exception as err:  # noqa: BLE001 - torch raises many kinds here
        raise ExportError(f"cannot export the model: {type(err).__name__}: {str(err)[:400]}"
                          ) from None
    denorm = torch.nn.ModuleDict()
    if isinstance(model, TrainedModel):
        for name, plan in plans.items():
            norm = model.norms[name]
            q = plan.change_of_basis_f32 if dtype == torch.float32 else plan.change_of_basis
            denorm[name] = _Denormalise(q, norm.shift, norm.scale, norm.per_atom_shift,
                                        plan.order, dtype).to(net.device)
    try:
        return torch.jit.script(_Exported(backbone, heads, denorm, max_z))
    except Exception as err:  # noqa: BLE001
        raise ExportError(f"cannot script the exported wrapper: {type(err).__name__}: "
                          f"{str(err)[:400]}") from None


def _save_without_grad(module: torch.jit.ScriptModule, path: Path, meta: dict) -> None:
    """Save ``module`` with parameters that do not require grad, so its outputs carry no autograd
    graph unless an input requires grad (``positions.requires_grad_()``: forces-style derivatives
    still work). The parameters may be the model's own tensors: their flags are restored."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        torch.jit.save(module, str(path), _extra_files={_META: json.dumps(meta)})
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def export_model(model, path: str | os.PathLike, *, check: bool = True) -> Path:
    """Write ``model`` (TrainedModel or TensorModel) as a TorchScript file at ``path``.

    Returns the path.  With ``check``, the file is loaded back and compared with ``model`` on
    structures it was not traced with (1e-5 relative in float32, 1e-10 in float64).

    Raises
    ------
    ExportError
        A part of the model that neither scripts nor traces, or a failed check.
    NonFiniteWeightsError
        Weights holding NaN or inf (a diverged run).
    """
    check_finite(model)
    trained = isinstance(model, TrainedModel)
    net = model.model if trained else model
    dtype = net.dtype
    plans = model_plans(model)
    emb = getattr(net.backbone, "node_embedding", None)
    max_z = int(getattr(emb, "max_z", None) or getattr(net.backbone, "max_z", None) or 118)
    trace_on, check_on = _examples(max_z, getattr(net.backbone, "elements", None))
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # the trace warns about the (expected) frozen Python branches, and torch 2.13 calls
            # torch.jit deprecated (TorchScript still loads wherever torch does)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            module = _build(model, net, plans, trace_on, max_z)
            meta = {"format": EXPORT_FORMAT, "inputs": list(INPUTS),
                    "dtype": str(dtype).removeprefix("torch."), "cutoff": net.cutoff,
                    "max_z": max_z, "trained": trained,
                    "heads": [{"name": n, "level": p.level, "order": p.order,
                               "irreps": p.irreps, "units": p.units, "spec": p.source}
                              for n, p in plans.items()]}
            path = Path(path)
            _save_without_grad(module, path, meta)
            if check:
                loaded = torch.jit.load(str(path), map_location=net.device)
                err = _compare(loaded, model, check_on, net.cutoff, dtype)
                tol = 1e-5 if dtype == torch.float32 else 1e-10
                if not err <= tol:
                    raise ExportError(
                        f"{path}: the exported module differs from the model by {err:.3g} "
                        f"(relative; tolerance {tol:g}) on structures it was not traced with; "
                        "the backbone does not trace faithfully")
    finally:
        model.train(was_training)
    return path


def load_exported(path: str | os.PathLike, map_location=None
                  ) -> tuple[torch.jit.ScriptModule, dict]:
    """The exported module and its metadata (``torch.jit.load`` with the ``tsym.json`` file)."""
    extra = {_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated")
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as err:  # noqa: BLE001
        raise ExportError(f"{path}: not a TorchScript file ({type(err).__name__}: {err})"
                          ) from None
    meta = json.loads(extra[_META]) if extra[_META] else {}
    if meta.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: not a tsym export (format {meta.get('format')!r})")
    return module, meta
