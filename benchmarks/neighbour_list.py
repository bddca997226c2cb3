"""Time the two neighbour-list backends of ``tsym.runtime.graph`` on the same structures.

Run: ``python -m benchmarks.neighbour_list [--repeats 3]``.  Each time is the best of
``--repeats`` runs of :func:`tsym.runtime.graph.neighbour_list` (the library call plus the shared
working-box setup and edge filtering that graph building uses).  Both backends are checked to
return the same edges before they are timed; the ratio is ASE time / matscipy time from this run.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from ase.build import bulk, molecule
from ase.collections import g2

from tsym.runtime.graph import neighbour_list

CUTOFF = 5.0


def molecules(count: int) -> list:
    names = sorted(g2.names)
    return [molecule(names[k % len(names)]) for k in range(count)]


def crystal(repeat: tuple[int, int, int]):
    atoms = bulk("Cu", "fcc", a=3.6) * repeat  # 1-atom primitive cell: exact atom counts
    atoms.rattle(0.01, seed=0)
    return atoms


CASES = [
    ("1000 molecules (g2)", lambda: molecules(1000)),
    ("Cu fcc, 100 atoms", lambda: [crystal((4, 5, 5))]),
    ("Cu fcc, 1000 atoms", lambda: [crystal((10, 10, 10))]),
    ("Cu fcc, 10000 atoms", lambda: [crystal((20, 20, 25))]),
]


def run(structures: list, backend: str) -> list:
    return [neighbour_list(a.positions, np.array(a.cell), a.pbc, CUTOFF, backend)
            for a in structures]


def best_time(structures: list, backend: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(structures, backend)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import ase
    try:
        import matscipy
    except ImportError:
        raise SystemExit("this benchmark compares ASE with matscipy: pip install matscipy")
    print(f"cutoff {CUTOFF} A, best of {args.repeats}; python {platform.python_version()}, "
          f"ase {ase.__version__}, matscipy {matscipy.__version__}")
    header = f"| {'case':<22} | {'atoms':>6} | {'edges':>8} | {'ase (s)':>9} | " \
             f"{'matscipy (s)':>12} | {'ase/matscipy':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, make in CASES:
        structures = make()
        ase_out, msp_out = run(structures, "ase"), run(structures, "matscipy")
        for a, m in zip(ase_out, msp_out):  # same edges, same order (both sorted by i, j, S)
            assert all(np.array_equal(x, y) for x, y in zip(a[:3], m[:3]))
        t_ase = best_time(structures, "ase", args.repeats)
        t_msp = best_time(structures, "matscipy", args.repeats)
        atoms = sum(len(a) for a in structures)
        edges = sum(len(out[0]) for out in ase_out)
        print(f"| {name:<22} | {atoms:>6} | {edges:>8} | {t_ase:>9.4f} | {t_msp:>12.4f} | "
              f"{t_ase / t_msp:>12.1f} |")


if __name__ == "__main__":
    main()
