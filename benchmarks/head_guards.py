"""Cost of the head's input checks (``compiler/head/_guards.py``) against the head's forward pass.

Run: ``python -m benchmarks.head_guards [--repeats N] [--threads T]``.

A polarizability self-mix head (``ij=ji``) on ``128x0e+64x1o+32x2e`` features of 516 nodes in 32
structures (the size of a QM9 batch of 32), float32: the median time of one call of
``check_head_inputs`` (width, dtype, batch dtype and shape, one ``torch.aminmax`` over ``batch``)
and of one forward pass of the head (which includes the checks), sampled in turn in each of
``--repeats`` rounds (a sample averages enough calls to last 20 ms).  Prints the two medians and
their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import tsym
from tsym.compiler.head import check_head_inputs

IRREPS = "128x0e+64x1o+32x2e"


def _sample(fn) -> float:
    """Seconds per call, averaged over enough calls to last 20 ms."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.02:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = tsym.compile_text("tensor alpha { indices ij; symmetry ij = ji }")[0]
    torch.manual_seed(0)
    head = tsym.SelfMixHead(IRREPS, plan.irreps, plan.change_of_basis)
    n_nodes, n_graphs = 516, 32
    x = torch.randn(n_nodes, head.in_dim)
    batch = torch.sort(torch.randint(0, n_graphs, (n_nodes,)))[0]
    batch[-1] = n_graphs - 1

    def checks():
        check_head_inputs(x, batch, n_graphs, head.irreps_in_str, head.in_dim, torch.float32, True)

    def forward():
        with torch.no_grad():
            head(x, batch, n_graphs)

    checks(), forward()
    rounds = [(_sample(checks), _sample(forward)) for _ in range(args.repeats)]
    c = statistics.median(r[0] for r in rounds)
    f = statistics.median(r[1] for r in rounds)
    print(f"checks {c * 1e6:.1f} us, head forward {f * 1e6:.1f} us, ratio {c / f:.4f} "
          f"({n_nodes} nodes, {n_graphs} structures, {IRREPS}, float32, {args.threads} thread)")


if __name__ == "__main__":
    main()
