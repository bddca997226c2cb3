"""Equivariance errors of heads on MACE and NequIP (backbones ``mace``, ``nequip-lib``), end to
end: a molecule and a periodic crystal (ethanol, rattled wurtzite ZnO) rotated and reflected
(positions and cell, 3 random rotations, each also times -1), outputs compared with
``R^{(x)n} T``; the largest error relative to each output's largest entry, float64 and float32::

    OMP_NUM_THREADS=1 python -m benchmarks.extra_backbones_equivariance
"""
from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk, molecule
from e3nn import o3

import tsym
from tsym.runtime.equivariance import rotate_atoms

ELEMENTS = ["H", "C", "O", "Zn"]
KWARGS = {
    "mace": dict(elements=ELEMENTS, hidden_irreps="16x0e+16x1o+16x2e", max_ell=3, correlation=3,
                 num_interactions=2, avg_num_neighbors=8.0),
    "nequip-lib": dict(elements=ELEMENTS, num_layers=3, l_max=2, num_features=16,
                       avg_num_neighbors=8.0),
}
ORDERS = {"polarizability": 2, "born_charges": 2, "piezoelectric": 3}


def rotated(x: np.ndarray, r: np.ndarray, order: int) -> np.ndarray:
    """``R^{(x)n} x`` for a stack ``x`` [G, 3, ..., 3]."""
    for axis in range(1, order + 1):
        x = np.moveaxis(np.tensordot(x, r, axes=([axis], [1])), -1, axis)
    return x


def main() -> None:
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=1)
    crystal = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    crystal.rattle(0.15, seed=2)
    print("| backbone | dtype | " + " | ".join(ORDERS) + " |\n|---|---|" + "---|" * len(ORDERS))
    for backbone, kwargs in KWARGS.items():
        for dtype in (torch.float64, torch.float32):
            model = tsym.build_model(list(ORDERS), backbone=backbone,
                                     cutoff=4.0, dtype=dtype, backbone_kwargs=kwargs,
                                     head_kwargs=dict(hidden_mul=4, mlp_hidden=8))
            before = model.predict([mol, crystal])
            worst = dict.fromkeys(ORDERS, 0.0)
            for seed in range(3):
                torch.manual_seed(seed)
                proper = o3.rand_matrix(dtype=torch.float64)
                for r in (proper, -proper):
                    after = model.predict([rotate_atoms(a, r) for a in (mol, crystal)])
                    for name, order in ORDERS.items():
                        x = before[name].astype(np.float64)
                        err = np.abs(after[name] - rotated(x, r.numpy(), order)).max()
                        worst[name] = max(worst[name], float(err / np.abs(x).max()))
            print(f"| {backbone} | {str(dtype)[6:]} | "
                  + " | ".join(f"{v:.1e}" for v in worst.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
