"""The overlap check and graph of 3 atoms in ever larger cubic cells: cost against empty space.

Run: ``python -m benchmarks.sparse_cell``.  For each cell edge L, the time (best of 3) and the
peak of Python/numpy allocations (tracemalloc) of the record check
(:func:`tsym.runtime.data.records.check_geometry`, pairs closer than 0.1 Angstrom) and of one graph
(:func:`tsym.runtime.graph.atoms_to_graph`, cutoff 5 Angstrom), with ``neighbour_backend="auto"``
(the k-d tree once the cutoff-sized bins outnumber the atoms).  Ratios are against L = 10 in the
same run.  The binning libraries are also run where they are safe (L <= 30) for contrast: their
bins grow as ``(L / 0.1)^3``; matscipy at L = 100 needs ~4 GB, so it is not run there.
"""
from __future__ import annotations

import platform
import resource
import time
import tracemalloc

import numpy as np
from ase import Atoms

from tsym.runtime import graph
from tsym.runtime.data.records import check_geometry
from tsym.runtime.neighbours import bin_count


def cell(edge: float) -> Atoms:
    return Atoms("H3", positions=[[0.01, 1, 1], [2, 1, 1], [edge - 1.49, 1, 1]],
                 cell=np.eye(3) * edge, pbc=True)


def measure(fn, repeats: int = 3) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak


def main() -> None:
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}")
    print("| L (A) | bins at 0.1 A | check ms | check peak kB | graph ms | graph peak kB |")
    print("|---|---|---|---|---|---|")
    base = None
    for edge in (10.0, 100.0, 1000.0, 10000.0):
        atoms = cell(edge)
        t_check, m_check = measure(lambda: check_geometry(atoms))
        t_graph, m_graph = measure(lambda: graph.atoms_to_graph(atoms, 5.0))
        base = base or (t_check, m_check)
        print(f"| {edge:g} | {bin_count(np.eye(3) * edge, 0.1):.0e} | {t_check * 1e3:.2f} | "
              f"{m_check / 1e3:.1f} | {t_graph * 1e3:.2f} | {m_graph / 1e3:.1f} |")
    print(f"# check at 10000 A / 10 A: time x{t_check / base[0]:.2f}, memory x{m_check / base[1]:.2f}")
    for backend in ("ase", "matscipy"):
        for edge in (10.0, 30.0):
            atoms = cell(edge)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t = time.perf_counter()
            graph.neighbour_list(atoms.positions, np.array(atoms.cell), atoms.pbc, 0.1, backend)
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            print(f"# binning {backend}, L = {edge:g}: {time.perf_counter() - t:.3f} s, peak RSS "
                  f"+{grown / 1024:.0f} MB")


if __name__ == "__main__":
    main()
