"""Derivative tensors by autograd: their cost against a forward pass and finite differences.

Run from the repository root: ``python -m benchmarks.derivatives [--rounds 5] [--count 32]
[--dtype float32]``.

One XPaiNN model of the default widths (``128x0e+64x1o+32x2e``, 3 blocks) with the dipole and
polarizability heads, on ``--count`` QM9-sized molecules (``backbone_speed.molecules``), one
thread.  Wall time (median of ``--rounds``) of

- a forward pass without gradients (``model.predict``'s work on a built graph),
- the APTs (``graph_derivatives(model, graph, "dipole")``: a forward and 3 backward passes),
- the Raman tensors (``"polarizability"``: a forward and 9 backward passes),
- both, from one forward (12 backward passes),
- a training step on a loss of the APTs (``create_graph=True``, then ``backward`` to the weights:
  the double backward through the kernels' recorded path) against a plain training step,

and what central finite differences of the same tensors would cost: ``6 N`` forwards for ``N``
atoms (the forward time per structure times 6 N summed over the structures).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import tsym
from tsym.runtime.spectra import graph_derivatives

from benchmarks.backbone_speed import molecules  # (benchmarks.common.molecules after the move)

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, rounds: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    model = tsym.build_model(["dipole",
                              "polarizability"], dtype=dtype, seed=0)
    mols = molecules(args.count)
    graph = tsym.collate(mols, model.cutoff, dtype)
    n_atoms = sum(len(m) for m in mols)

    def forward():
        with torch.no_grad():
            model(graph)

    def apt_loss_step():
        model.zero_grad()
        apt = graph_derivatives(model, graph, "dipole", create_graph=True)["dipole"]
        apt.pow(2).mean().backward()

    def plain_step():
        model.zero_grad()
        model(graph)["dipole"].pow(2).mean().backward()

    rows = {
        "forward (no grad)": forward,
        "APTs (dipole, 3 backward)": lambda: graph_derivatives(model, graph, "dipole"),
        "Raman tensors (polarizability, 9 backward)":
            lambda: graph_derivatives(model, graph, "polarizability"),
        "both (one forward, 12 backward)": lambda: graph_derivatives(model, graph),
        "training step, loss on the dipole": plain_step,
        "training step, loss on the APTs (double backward)": apt_loss_step,
    }
    times = {name: _time(fn, args.rounds) for name, fn in rows.items()}
    print(f"{args.count} molecules, {n_atoms} atoms, {graph['edge_index'].shape[1]} edges, "
          f"{args.dtype}, 1 thread, median of {args.rounds}")
    print(f"| what | seconds | x forward |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.3f} | {t / times['forward (no grad)']:.1f} |")
    fd = 6 * n_atoms * times["forward (no grad)"] / args.count  # per-structure forwards
    print(f"| central differences of both (6 N forwards of one structure each, estimated) | "
          f"{fd:.1f} | {fd / times['forward (no grad)']:.0f} |")


if __name__ == "__main__":
    main()
