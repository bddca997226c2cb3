"""Translation: a structure 1e6 Angstrom from the origin predicts what it predicts at the origin.

Issue #26, defect 3: positions were cast to float32 as given, so at 1e6 Angstrom (float32 spacing
0.06 Angstrom) the edge vectors, and the predictions, changed by up to 4 % of |alpha|.  Graphs now
hold the positions minus their centroid, taken in float64 (:func:`local_positions`).

The bound, derived
------------------
Let ``x`` be the positions at the origin and ``x + t`` the shifted ones (float64, as ASE holds
them).  Storing ``x + t`` rounds each coordinate by ``|t| eps64 / 2``; the float64 centroid adds
as much again, so after centring the two graphs' float64 positions differ by at most
``d64 = 2 |t|_max eps64`` per coordinate (2.2e-10 Angstrom at 1e6).  Cast to the model dtype:

* float64: the inputs differ by ``d64``; the outputs by at most ``J d64``, where
  ``J = max_c sum_k |d alpha_c / d x_k|`` (the L1 norm of a row of the Jacobian, computed by
  autograd in float64), plus the model's own float64 rounding (``TOLERANCES`` of |alpha|).
* float32: two float64 numbers ``d64`` apart round to float32 numbers at most one unit in the
  last place apart, ``R eps32`` with ``R`` the largest centred coordinate, so the inputs differ
  by ``R eps32 + d64`` and the outputs by ``J (R eps32 + d64)`` plus twice the model's float32
  rounding ``E32`` (measured as ``|alpha32 - alpha64|`` against its float64 twin, once for each
  evaluation; a factor 2 more for the rounding at the shifted copy being another draw).

Neither term grows with ``|t|``: before the fix the float32 difference was ~1e-2 here, thousands
of times the bound (a few 1e-6).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import tsym
from tsym.runtime import keys
from tsym.runtime.graph import collate, local_positions
from tsym.runtime.inference.export import graph_inputs

from ..conftest import TOLERANCES, float64_twin

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"
KWARGS = {"num_scalars": 16, "irreps": "8x0e+4x1o+2x2e", "num_blocks": 1, "embedding": "onehot"}
CUTOFF = 4.0
SHIFT = np.array([1.0e6, -0.7e6, 0.3e6])  # Angstrom
EPS32, EPS64 = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def _structures():
    rng = np.random.default_rng(7)
    mol = molecule("CH3OH")
    mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
    crystal = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 2, 2))  # 11.3 A periodic cell
    crystal.positions += rng.normal(scale=0.1, size=crystal.positions.shape)
    return {"molecule": mol, "periodic cell": crystal}


def _model(dtype):
    return tsym.build_model(SPEC, cutoff=CUTOFF, dtype=dtype, backbone_kwargs=KWARGS,
                            seed=3).eval()


def _alpha(model, atoms) -> np.ndarray:
    return np.asarray(model.predict([atoms])["alpha"], dtype=np.float64)[0]  # [3, 3]


def _jacobian_row_norm(model64, atoms) -> float:
    """``max_c sum_k |d alpha_c / d x_k|`` in float64 (autograd through the edge vectors)."""
    graph = collate([atoms], CUTOFF, torch.float64)
    positions = graph[keys.POSITIONS].requires_grad_(True)
    alpha = model64(graph)["alpha"].reshape(-1)  # [9]
    rows = [torch.autograd.grad(a, positions, retain_graph=True)[0].abs().sum() for a in alpha]
    return float(max(rows))


@pytest.mark.parametrize("name", ["molecule", "periodic cell"])
def test_prediction_is_translation_exact(name, dtype):
    atoms = _structures()[name]
    moved = atoms.copy()
    moved.positions += SHIFT
    model = _model(dtype)
    twin = model if dtype == torch.float64 else float64_twin(model, lambda: _model(torch.float64))
    jac = _jacobian_row_norm(twin, atoms)
    reference = _alpha(model, atoms)
    scale = np.abs(reference).max()
    d64 = 2 * np.abs(SHIFT).max() * EPS64
    if dtype == torch.float64:
        bound = jac * d64 + TOLERANCES[dtype] * scale
    else:
        radius = np.abs(local_positions(atoms.positions)).max()
        own = np.abs(reference - _alpha(twin, atoms)).max()  # E32
        bound = jac * (radius * EPS32 + d64) + 4 * own + EPS32 * scale
    error = np.abs(_alpha(model, moved) - reference).max()
    assert error <= bound, (name, dtype, error, bound, jac)


def test_forces_still_flow_through_centred_positions():
    """Centring subtracts a constant: d alpha / d positions is the same at 1e6 Angstrom."""
    atoms = _structures()["molecule"]
    moved = atoms.copy()
    moved.positions += SHIFT
    model = _model(torch.float64)
    grads = []
    for a in (atoms, moved):
        graph = collate([a], CUTOFF, torch.float64)
        positions = graph[keys.POSITIONS].requires_grad_(True)
        model(graph)["alpha"].sum().backward()
        grads.append(positions.grad)
    scale = float(grads[0].abs().max())
    assert scale > 0
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-6 * scale  # d64 / bond ~ 1e-10


@pytest.mark.parametrize("name", ["molecule", "periodic cell"])
def test_graph_and_export_inputs_do_not_carry_the_shift(name):
    """The graph (and so the TorchScript export's inputs) hold centred float32 positions: one
    unit in the last place of the structure's size apart, whatever the shift."""
    atoms = _structures()[name]
    moved = atoms.copy()
    moved.positions += SHIFT
    here, there = graph_inputs(atoms, CUTOFF), graph_inputs(moved, CUTOFF)
    radius = float(here[0].abs().max())
    assert radius < 20.0  # the size of the structure, not 1e6
    assert float((here[0] - there[0]).abs().max()) <= radius * EPS32
    for a, b in zip(here[1:], there[1:]):  # numbers, edges, shifts, cell, batch, count
        assert torch.equal(a, b)
