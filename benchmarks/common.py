"""The code the benchmarks share: test structures, the test split of a run, a reference head.

The one helper module of ``benchmarks/`` (a package: run a benchmark as ``python -m
benchmarks.NAME`` from the clone's root); it imports tsym's public API only, and no script
imports ``tests`` or edits ``sys.path`` (``tests/test_architecture.py`` checks both).

* :func:`molecules`, :func:`crystals` (and :func:`alkane`): rattled QM9-sized molecules and
  ~40-atom crystals for the speed benchmarks, with :data:`SPECS` and :data:`CUTOFF`;
* :func:`score_test_split`: the test split of a finished run of a shared data set;
* :func:`markdown_table`: the results tables of ``benchmarks/README.md``;
* :func:`reference_node_irreps`: the self-mix head's per-node arithmetic as it was before the
  fusion (commit a91658c), through e3nn's modules one after the other (``lin_u``, ``lin_v``,
  ``tp1``, the layer norm, ``tp2`` with the MLP's path weights, ``lin_out``, the skip): the fused
  code must give the same rows from the same weights (``tests/compiler/test_fused_head.py``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.collections import g2
from ase.spacegroup import crystal

__all__ = ["SPECS", "CUTOFF", "alkane", "molecules", "crystals", "score_test_split",
           "reference_node_irreps", "markdown_table"]

#: The heads of the speed benchmarks (library names).
SPECS = ["elastic", "dielectric", "polarizability"]
CUTOFF = 5.0


# --------------------------------------------------------------------------- structures

def alkane(n: int) -> Atoms:
    """n-alkane C_nH_{2n+2}, all-trans zig-zag (C-C 1.54, C-H 1.09 Angstrom)."""
    symbols, positions = [], []
    for k in range(n):
        x, y = 1.258 * k, 0.889 * (k % 2)
        out = 1.0 if k % 2 else -1.0  # hydrogens point away from the chain
        symbols.append("C")
        positions.append((x, y, 0.0))
        symbols += ["H", "H"]
        positions += [(x, y + 0.63 * out, 0.89), (x, y + 0.63 * out, -0.89)]
        if k in (0, n - 1):
            symbols.append("H")
            positions.append((x + (1.03 if k else -1.03), y + 0.36 * out, 0.0))
    return Atoms(symbols, positions=positions)


def molecules(count: int) -> list[Atoms]:
    pool = [molecule(name) for name in g2.names if len(molecule(name)) >= 13]
    pool += [molecule(name) for name in ("BDA", "biphenyl", "C7NH5")]
    pool += [alkane(n) for n in (5, 6, 7)]
    pool.sort(key=len, reverse=True)
    out = []
    for k in range(count):
        atoms = pool[k % len(pool)].copy()
        atoms.rattle(0.02, seed=k)
        out.append(atoms)
    return out


def crystals(count: int) -> list[Atoms]:
    hexagonal = [3.25, 3.25, 5.207, 90, 90, 120]
    cells = [
        (crystal(["Sr", "Ti", "O"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221,
                 cellpar=[3.905] * 3 + [90] * 3), (2, 2, 2)),
        (crystal(["Si", "O"], [(0.4697, 0, 2 / 3), (0.4135, 0.2669, 0.7858)], spacegroup=154,
                 cellpar=[4.916, 4.916, 5.405, 90, 90, 120]), (2, 2, 1)),
        (crystal(["Zn", "O"], [(1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.382)], spacegroup=186,
                 cellpar=hexagonal), (3, 3, 1)),
        (crystal(["Ti", "O"], [(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                 cellpar=[4.594, 4.594, 2.959, 90, 90, 90]), (2, 2, 2)),
        (bulk("NaCl", "rocksalt", a=5.64, cubic=True), (2, 2, 1)),
        (bulk("Si", "diamond", a=5.43, cubic=True), (2, 2, 1)),
        (bulk("Cu", "fcc", a=3.61, cubic=True), (2, 2, 3)),
        (bulk("Mg", "hcp", a=3.21, c=5.21), (3, 3, 2)),
    ]
    out = []
    for k in range(count):
        cell, repeat = cells[k % len(cells)]
        atoms = cell.repeat(repeat)
        atoms.rattle(0.03, seed=k)
        out.append(atoms)
    return out


def score_test_split(cfg: dict, run_dir: Path, model):
    """The test split of the run in ``run_dir`` (a ``Dataset``), the number of validation
    structures and the split (``split.json``), for a config ``cfg`` of :mod:`benchmarks.run_shared`."""
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.inference.predict import checkpoint_labels

    labels = list(checkpoint_labels(run_dir, model).values())
    split = json.loads((run_dir / "split.json").read_text())
    main = read_dataset(cfg["data"]["train"], labels, model.plans, verbose=False)
    if cfg["data"].get("test"):
        test = read_dataset(cfg["data"]["test"], labels, model.plans, verbose=False)
    else:
        test = main.subset(split["test"])
    n_valid = (len(read_dataset(cfg["data"]["valid"], labels, model.plans, verbose=False))
               if cfg["data"].get("valid") else len(split.get("val", split.get("valid", []))))
    return test, n_valid, split


def reference_node_irreps(head, node_features: torch.Tensor) -> torch.Tensor:
    """``[n_nodes, irreps_in.dim]`` -> ``[n_nodes, rows.dim]`` through e3nn's modules."""
    u = head.lin_u(node_features)  # [n_nodes, hidden.dim]
    v = head.lin_v(node_features)  # [n_nodes, irreps_v.dim]  one block per tp1 path
    h = head.norm(head.tp1(u, v))  # [n_nodes, mid.dim]
    w = head.mlp(node_features[:, head.scalar_idx])  # [n_nodes, tp2.weight_numel]
    z = head.tp2(h, h, w)  # [n_nodes, mix.dim]
    y = head.lin_out(z)  # [n_nodes, rows.dim]
    if head.has_skip:
        y = y + head.skip(node_features)
    return y


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table: ``header`` cells, then one line per row (cells formatted by the caller)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
