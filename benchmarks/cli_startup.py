"""Start-up of the compiler's command line against ``python -c "import torch"`` (issue 11 point 8).

Run: ``python -m benchmarks.cli_startup [--rounds 7] [--spec dipole]``.

Each round runs, in a fresh process each and in this order, ``tsym inspect SPEC`` (the installed
console script), ``python -c "import torch"`` (the baseline) and ``python -c "import sympy"``
(the floor the issue names: the compiler needs sympy), and records the wall time and the CPU time
(user + system, of the child) of each.  The rounds are interleaved so that the load of a shared
machine falls on all three alike; the figures are the medians over rounds, and the ratio
``inspect / import torch`` is taken per round (its median and range are printed).  One warm-up
round, not counted, fills the file cache.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tsym_command() -> list[str]:
    """The ``tsym`` console script of this interpreter's environment (else ``python -m tsym``)."""
    script = Path(sys.executable).parent / "tsym"
    if script.exists():
        return [str(script)]
    found = shutil.which("tsym")
    return [found] if found else [sys.executable, "-m", "tsym"]


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one run of ``cmd``; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--spec", default="dipole", help="a small one-index spec (a library name or a file)")
    args = parser.parse_args()
    commands = {
        "tsym inspect": tsym_command() + ["inspect", args.spec],
        "import torch": [sys.executable, "-c", "import torch"],
        "import sympy": [sys.executable, "-c", "import sympy"],
    }
    for cmd in commands.values():  # warm-up: file cache, .pyc files
        run(cmd)
    wall: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, cmd in commands.items():
            w, c = run(cmd)
            wall[name].append(w)
            cpu[name].append(c)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; Python {platform.python_version()}; "
          f"{args.rounds} interleaved rounds, medians")
    print(f"# tsym inspect = {' '.join(commands['tsym inspect'][-3:])}")
    print(f"{'command':<14} {'wall (s)':>9} {'CPU (s)':>8}")
    for name in commands:
        print(f"{name:<14} {statistics.median(wall[name]):>9.3f} {statistics.median(cpu[name]):>8.3f}")
    ratios = [a / b for a, b in zip(wall["tsym inspect"], wall["import torch"])]
    cpu_ratios = [a / b for a, b in zip(cpu["tsym inspect"], cpu["import torch"])]
    print(f"wall ratio tsym inspect / import torch: median {statistics.median(ratios):.2f} "
          f"(rounds {min(ratios):.2f}..{max(ratios):.2f})")
    print(f"CPU  ratio tsym inspect / import torch: median {statistics.median(cpu_ratios):.2f} "
          f"(rounds {min(cpu_ratios):.2f}..{max(cpu_ratios):.2f})")
    faster = statistics.median(ratios) < 1
    print("tsym inspect is " + ("faster" if faster else "NOT faster") + " than import torch")
    sys.exit(0 if faster else 1)


if __name__ == "__main__":
    main()
