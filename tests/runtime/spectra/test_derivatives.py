"""Derivative tensors by autograd (``tsym.derivatives``): symmetry, sum rule, finite differences.

Tolerances.  float64: 1e-10 of the largest entry (``TOLERANCES``, conftest: rounding amplified
~100x over epsilon in these networks stays far below; measured 3e-15).  float32: the same checks
against 5e-5 of the largest entry: float32's epsilon (6e-8) amplified ~30x by the chained
operations of two blocks, a head and the backward passes (measured: 2e-6 for the Raman tensors,
8e-7 for the APTs, the same against the float64 model with the same weights), with a margin of
25 for other CPUs' kernels.
Finite differences (float64): the central quotient ``D(h)`` has truncation error ``~h^2 f'''/6``
and rounding ``~eps |f| / h``; ``|D(h) - D(2h)| = 3 h^2 |f'''| / 6`` measures the first, so
``|autograd - D(h)| <= |D(h) - D(2h)| + 100 eps max|f| / h`` (a factor 3 of slack on the first).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tsym
from tsym.runtime.spectra import DerivativeError, graph_derivatives

from ...conftest import TOLERANCES
from ._models import SPECS, molecules, orthogonal, tiny_model

SPECS_DIPOLE = SPECS[:1]

TOL = {torch.float64: TOLERANCES[torch.float64], torch.float32: 5e-5}


def _moved(structures, q=np.eye(3), t=np.zeros(3)):
    out = []
    for atoms in structures:
        a = atoms.copy()
        a.positions = atoms.positions @ q.T + t
        out.append(a)
    return out


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_shapes_and_batching(dtype):
    model = tiny_model(dtype)
    mols = molecules()
    both = tsym.derivatives(model, mols)
    assert both["dipole"].shape == (7, 3, 3) and both["polarizability"].shape == (7, 3, 3, 3)
    assert both["dipole"].dtype == (np.float64 if dtype == torch.float64 else np.float32)
    alone = [tsym.derivatives(model, m) for m in mols]  # one structure per call
    for name in ("dipole", "polarizability"):
        joined = np.concatenate([a[name] for a in alone])
        assert _rel(both[name], joined) <= TOL[dtype]
        assert np.abs(both[name]).max() > 0


def test_rotation_and_reflection(dtype):
    """d y'(Q r)/d r' = Q applied to every index of d y(r)/d r, for an improper Q too."""
    model = tiny_model(dtype)
    mols = molecules()
    for q in (orthogonal(0), orthogonal(1, proper=True)):
        base = tsym.derivatives(model, mols)
        moved = tsym.derivatives(model, _moved(mols, q))
        want_apt = np.einsum("ax,by,ixy->iab", q, q, base["dipole"])
        want_raman = np.einsum("ax,by,cz,ixyz->iabc", q, q, q, base["polarizability"])
        assert _rel(moved["dipole"], want_apt) <= TOL[dtype]
        assert _rel(moved["polarizability"], want_raman) <= TOL[dtype]


def test_translation_invariance_and_apt_sum_rule(dtype):
    model = tiny_model(dtype)
    mols = molecules()
    base = tsym.derivatives(model, mols)
    shifted = tsym.derivatives(model, _moved(mols, t=np.array([3.1, -7.2, 0.4])))
    for name in base:
        assert _rel(shifted[name], base[name]) <= TOL[dtype]
    # the dipole head is translation invariant: its APTs add up to zero over each molecule
    for rows in (slice(0, 3), slice(3, 7)):
        for name in base:
            total = base[name][rows].sum(axis=0)
            assert np.abs(total).max() <= TOL[dtype] * np.abs(base[name][rows]).max()


def test_float32_agrees_with_float64_twin():
    m64 = tiny_model(torch.float64)
    m32 = tiny_model(torch.float32)
    with torch.no_grad():  # the float32 model with the float64 one's weights, rounded once
        for p32, p64 in zip(m32.parameters(), m64.parameters()):
            p32.copy_(p64)
    mols = molecules()
    d32, d64 = tsym.derivatives(m32, mols), tsym.derivatives(m64, mols)
    for name in d64:
        assert _rel(d32[name], d64[name]) <= TOL[torch.float32]


def test_finite_differences_float64():
    model = tiny_model(torch.float64)
    mol = molecules()[1]
    graph = tsym.collate([mol], model.cutoff, torch.float64)
    auto = graph_derivatives(model, graph)

    def values(pos):
        with torch.no_grad():
            out = model({**graph, "positions": pos})
        return {k: v[0].numpy() for k, v in out.items()}

    pos0 = graph["positions"]
    eps = np.finfo(np.float64).eps
    for name in auto:
        scale = max(np.abs(values(pos0)[name]).max(), 1e-300)
        for h in (2e-5,):
            for i in range(len(mol)):
                for c in range(3):
                    quotients = []
                    for step in (h, 2 * h):
                        plus, minus = pos0.clone(), pos0.clone()
                        plus[i, c] += step
                        minus[i, c] -= step
                        quotients.append((values(plus)[name] - values(minus)[name]) / (2 * step))
                    got = auto[name][i, ..., c].numpy()
                    bound = np.abs(quotients[0] - quotients[1]).max() + 100 * eps * scale / h
                    assert np.abs(got - quotients[0]).max() <= bound, (name, i, c)
                    assert bound < 1e-6 * float(auto[name].abs().max())  # the check has teeth


def test_refuses_missing_and_atom_level_heads():
    model = tiny_model(torch.float64)
    with pytest.raises(DerivativeError, match=r"^the model has no head 'born' \(heads: "):
        tsym.derivatives(model, molecules()[0], heads="born")
    atom = tiny_model(torch.float64, specs=["tensor q { indices i; level atom }"])
    with pytest.raises(DerivativeError, match=r"^the model has no structure-level head"):
        tsym.derivatives(atom, molecules()[0])
    with pytest.raises(DerivativeError, match=r"^head 'q' is per atom"):
        tsym.derivatives(atom, molecules()[0], heads=["q"])
    assert issubclass(DerivativeError, tsym.TsymError)


def test_create_graph_reaches_the_weights():
    """A loss on the APTs back-propagates to every weight (a derivative loss could train)."""
    model = tiny_model(torch.float64)
    graph = tsym.collate(molecules(), model.cutoff, torch.float64)
    apt = graph_derivatives(model, graph, "dipole", create_graph=True)["dipole"]  # [N, 3, 3]
    assert apt.requires_grad
    model.zero_grad()
    apt.pow(2).sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) >= len(grads) // 2


def test_trained_model_derivatives_are_in_data_units():
    """A TrainedModel de-normalises: y = scale * y_n + shift (shift on 0e only, per atom for a
    sum-pooled head).  The shift has no derivative, so d(dipole)/dr = scale_1 * the raw model's
    and the polarizability's 0e and 2e parts scale by their own factors."""
    from tsym.runtime.model import TrainedModel
    from tsym.runtime.model.normalisation import Normalisation
    model = tiny_model(torch.float64)
    plans = {p.name: p for p in model.plans}
    norms = {"dipole": Normalisation("1x1o", (0.0,) * 3, (2.5,) * 3, True),
             "polarizability": Normalisation("1x0e+1x2e", (7.0,) + (0.0,) * 5,
                                             (3.0,) + (0.5,) * 5, True)}
    trained = TrainedModel(model, norms).eval()
    mols = molecules()
    raw, got = tsym.derivatives(model, mols), tsym.derivatives(trained, mols)
    assert _rel(got["dipole"], 2.5 * raw["dipole"]) <= TOL[torch.float64]
    q = plans["polarizability"].basis_array  # [6, 3, 3]: 0e row first, then the 2e rows
    coords = np.einsum("kab,iabc->ikc", q, raw["polarizability"])  # [N, 6, 3]
    want = np.einsum("kab,ikc->iabc", q, coords * np.array([3.0] + [0.5] * 5)[None, :, None])
    assert _rel(got["polarizability"], want) <= TOL[torch.float64]


def test_a_loss_on_apts_trains():
    """Fitting the APTs of fixed point charges (H +0.41, O -0.82 e: APT_i = q_i I) through the
    double backward: 15 Adam steps on two water geometries lower the loss (a derivative loss
    is possible; a training-config option for it is not part of this change)."""
    model = tsym.build_model(SPECS_DIPOLE, seed=2, dtype=torch.float64,
                             backbone_kwargs=dict(num_scalars=8, irreps="8x0e+4x1o",
                                                  num_blocks=1, embedding="onehot", max_z=10),
                             head_kwargs=dict(hidden_mul=2, mlp_hidden=4))
    waters = [molecules()[0], molecules()[0]]
    waters[1].rattle(0.05, seed=4)
    graph = tsym.collate(waters, model.cutoff, torch.float64)
    charges = torch.where(graph["atomic_numbers"] == 8, -0.82, 0.41).to(torch.float64)
    target = charges[:, None, None] * torch.eye(3, dtype=torch.float64)  # [N, 3, 3]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        apt = graph_derivatives(model, graph, "dipole", create_graph=True)["dipole"]
        loss = (apt - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
