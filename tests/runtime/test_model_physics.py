"""End to end (issue 12): a model with the sum-rule and positive specs keeps its physics and its
equivariance through the backbone, batched molecules and crystals.

Tolerances: equivariance as in ``test_model.py`` (``TOLERANCES``, relative to each output's
Frobenius norm).  The sum rule: the bound of ``tests/compiler/test_constraints.sum_bound``,
``n_atoms (2 d + 5) u A`` with ``A`` from the head's rows before centring (read from the backbone's
features of the same batch), ``u`` the unit roundoff of the model's dtype.
"""
from __future__ import annotations

import numpy as np
import torch

import tsym
from tsym.runtime import keys
from tsym.runtime.graph import collate
from tsym.runtime.equivariance import assert_equivariant

from ..conftest import molecule_and_cell, SPECS_DIR, TOLERANCES

NAMES = ("born_charges_sum_rule", "elastic_positive", "polarizability_positive")
ORDERS = {"born_charges_sum_rule": 2, "elastic_positive": 4, "polarizability_positive": 2}
ATOM_LEVEL = {name: name == "born_charges_sum_rule" for name in NAMES}
MANDEL = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_MODELS: dict = {}


def _model(dtype):
    if dtype not in _MODELS:
        _MODELS[dtype] = tsym.build_model([SPECS_DIR / f"{n}.tsym" for n in NAMES], cutoff=4.0, dtype=dtype,
                                          backbone_kwargs=dict(num_scalars=16, irreps="8x0e+4x1o+4x2e",
                                                               num_blocks=2, num_basis=8),
                                          head_kwargs=dict(hidden_mul=4, mlp_hidden=8))
    return _MODELS[dtype]


def test_physics_and_equivariance_end_to_end(dtype):
    model = _model(dtype)
    structures = molecule_and_cell()
    pred = model.predict(structures)
    u = torch.finfo(dtype).eps / 2
    head = model.heads["born_charges_sum_rule"]
    with torch.no_grad():
        features = model.backbone(collate(structures, model.cutoff, dtype))[keys.NODE_FEATURES]
        rows = head.node_irreps(features).double()  # [N, 9] before centring
    a = (rows.abs().sum(dim=1) * head.change_of_basis.abs().max()).numpy()  # [N]
    z, offset = pred["born_charges_sum_rule"].astype(np.float64), 0
    for atoms in structures:
        n = len(atoms)
        block = z[offset:offset + n]  # [n, 3, 3]
        bound = n * (3 + 2 * (9 + 1)) * u * a[offset:offset + n].max()
        assert np.abs(block.sum(axis=0)).max() <= bound
        assert np.abs(block).max() > 1e3 * bound  # the atom tensors themselves are not zero
        offset += n
    for name in ("elastic_positive", "polarizability_positive"):
        t = pred[name].astype(np.float64)
        if t.ndim == 5:
            w = [1.0 if i == j else 2**0.5 for i, j in MANDEL]
            t = np.array([[[w[a] * w[b] * c[i, j, k, l] for b, (k, l) in enumerate(MANDEL)]
                           for a, (i, j) in enumerate(MANDEL)] for c in t])
        assert (np.linalg.eigvalsh(0.5 * (t + np.swapaxes(t, 1, 2))).min(axis=1) > 0).all()
    scale = {k: float(np.linalg.norm(v)) for k, v in pred.items()}

    def fn(atoms_list):
        return {k: v.astype(np.float64) / scale[k] for k, v in model.predict(atoms_list).items()}

    assert_equivariant(fn, structures, ORDERS, {}, atol=TOLERANCES[dtype], rtol=0.0, atom_level=ATOM_LEVEL,
                       seed=4)
