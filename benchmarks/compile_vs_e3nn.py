"""Compile time of tsym against e3nn's ``CartesianTensor``, ranks 1 to 8, in the same run.

Run: ``python -m benchmarks.compile_vs_e3nn [--quick] [--repeats 3]``.

Each formula is measured in a fresh subprocess per library (no cache survives from one formula to
the next, and the peak resident memory ``ru_maxrss`` belongs to that formula alone):

- tsym: ``tsym.compile_text(spec)`` with the caches cleared before each call
  (``tsym.compiler.basis.rational_generators`` and the parse cache), best of ``--repeats``;
- e3nn: ``e3nn.io.CartesianTensor(formula)`` (its construction computes the change of basis with
  ``ReducedTensorProducts``), best of ``--repeats`` when one call takes under 10 s, else one call.

e3nn is not run at ranks 7 and 8 (rank 7 took ~570 s and 4.5 GB; rank 8 did not finish in
600 s); ``--quick`` also skips it from rank 5.  The irreps of both are compared (sorted,
simplified).  Targets, each printed PASS/FAIL: tsym no slower than e3nn on every formula, rank 6
fully symmetric under 0.5 s, ranks 7 and 8 fully symmetric under 10 s and 2 GB each.  Peak memory
is the whole process (Python, torch and e3nn imported) measured by ``getrusage``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

#: (label, e3nn formula, run e3nn: True, or a note printed instead)
FORMULAS = [
    ("vector", "i", True),
    ("symmetric", "ij=ji", True),
    ("antisymmetric", "ij=-ji", True),
    ("rank 2", "ij", True),
    ("rank 3 fully symmetric", "ijk=jik=ikj", True),
    ("piezoelectric", "ijk=ikj", True),
    ("rank 3", "ijk", True),
    ("elastic", "ijkl=jikl=ijlk=klij", True),
    ("rank 4 fully symmetric", "ijkl=jikl=ikjl=ijlk", True),
    ("rank 4", "ijkl", True),
    ("rank 5 fully symmetric", "ijklm=jiklm=jklmi", True),
    ("rank 6 fully symmetric", "ijklmn=jiklmn=jklmni", True),
    ("rank 7 fully symmetric", "ijklmno=jiklmno=jklmnoi", "skipped (>600 s measured)"),
    ("rank 8 fully symmetric", "ijklmnop=jiklmnop=jklmnopi", "skipped (>600 s measured)"),
]
SLOW_E3NN_S = 10.0  # above this, e3nn is timed once
TIMEOUT_S = 900
GB = 1024**3


def spec_text(formula: str) -> str:
    """The tsym spec of an e3nn formula: ``"ij=-ji"`` -> ``indices ij; symmetry ij = -ji``."""
    terms = formula.split("=")
    clauses = [f"indices {terms[0].lstrip('-')}"]
    if len(terms) > 1:
        clauses.append("symmetry " + " = ".join(terms))
    return "tensor t { " + "; ".join(clauses) + " }"


def sorted_irreps(irreps: str) -> str:
    from e3nn import o3

    return str(o3.Irreps(irreps).sort().irreps.simplify())


# --- workers: one formula, one library, in a fresh process --------------------------------------
def _clear_tsym_caches() -> None:
    import tsym.compiler.basis
    import tsym.compiler.parse

    tsym.compiler.basis.rational_generators.cache_clear()
    tsym.compiler.parse._parse_cached.cache_clear()


def work_tsym(formula: str, repeats: int) -> dict:
    import tsym

    text = spec_text(formula)
    times = []
    for _ in range(repeats):
        _clear_tsym_caches()
        start = time.perf_counter()
        (plan,) = tsym.compile_text(text)
        times.append(time.perf_counter() - start)
    return {"times": times, "irreps": plan.irreps, "dim": plan.num_components}


def work_e3nn(formula: str, repeats: int) -> dict:
    from e3nn.io import CartesianTensor

    times = []
    while True:
        start = time.perf_counter()
        irreps = CartesianTensor(formula)
        times.append(time.perf_counter() - start)
        if len(times) >= repeats or times[-1] > SLOW_E3NN_S:
            break
    return {"times": times, "irreps": str(irreps), "dim": irreps.dim}


def worker(library: str, formula: str, repeats: int) -> None:
    import torch  # noqa: F401  (both libraries import it: the baseline memory is the same)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = (work_tsym if library == "tsym" else work_e3nn)(formula, repeats)
    result["base_rss"] = base
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps(result))


def measure(library: str, formula: str, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", library, formula, "--repeats", str(repeats)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report -------------------------------------------------------------------------------------
def machine_info() -> list[str]:
    import e3nn
    import torch

    import tsym

    return [
        f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine   {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})",
        f"python    {platform.python_version()}; torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"e3nn {e3nn.__version__}; tsym {tsym.__version__}",
    ]


def _fmt_time(t: float | None) -> str:
    return "-" if t is None else f"{t:.4f}" if t < 10 else f"{t:.1f}"


def _fmt_mem(res: dict) -> str:
    return f"{res['peak_rss'] / GB:.2f}" if "peak_rss" in res else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip e3nn from rank 5")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "FORMULA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, args.repeats)
        return 0

    print("\n".join(machine_info()))
    print(f"tsym: best of {args.repeats}, caches cleared; e3nn: best of {args.repeats} (1 when a call "
          f"takes > {SLOW_E3NN_S:.0f} s); one fresh process per formula and library; times in s, "
          "peak RSS in GiB (whole process)\n")
    header = (f"{'':24} {'formula':27} {'dim':>4} {'tsym s':>8} {'e3nn s':>8} {'e3nn/tsym':>9} "
              f"{'tsym GiB':>8} {'e3nn GiB':>8}  irreps  targets")
    print(header)
    print("-" * len(header))
    failures = 0
    for label, formula, run_e3nn in FORMULAS:
        order = len(formula.split("=")[0])
        ours = measure("tsym", formula, args.repeats)
        if args.quick and order >= 5 and run_e3nn is True:
            run_e3nn = "skipped (--quick)"
        theirs = measure("e3nn", formula, args.repeats) if run_e3nn is True else {"note": run_e3nn}
        t_ours = min(ours["times"]) if "times" in ours else None
        t_theirs = min(theirs["times"]) if "times" in theirs else None
        ratio = f"{t_theirs / t_ours:9.1f}" if t_ours and t_theirs else f"{'-':>9}"
        checks = []
        if t_ours is None:
            checks.append(f"FAIL tsym: {ours.get('error')}")
        if t_ours is not None and t_theirs is not None:
            checks.append(("PASS" if t_ours <= t_theirs else "FAIL") + " tsym <= e3nn")
        if label == "rank 6 fully symmetric" and t_ours is not None:
            checks.append(("PASS" if t_ours < 0.5 else "FAIL") + " < 0.5 s")
        if order in (7, 8) and t_ours is not None:
            checks.append(("PASS" if t_ours < 10 else "FAIL") + " < 10 s")
            checks.append(("PASS" if ours["peak_rss"] < 2 * GB else "FAIL") + " < 2 GB")
        if "irreps" in ours and "irreps" in theirs:
            same = sorted_irreps(ours["irreps"]) == sorted_irreps(theirs["irreps"])
            irreps_note = "same" if same else f"DIFFER: tsym {ours['irreps']} e3nn {theirs['irreps']}"
            checks.append(("PASS" if same else "FAIL") + " irreps")
        else:
            irreps_note = "-"
        if "note" in theirs:
            checks.append(f"e3nn {theirs['note']}")
        elif "error" in theirs:
            checks.append(f"e3nn: {theirs['error']}")
        failures += sum(check.startswith("FAIL") for check in checks)
        dim = ours.get("dim", "-")
        print(f"{label:24} {formula:27} {dim:>4} {_fmt_time(t_ours):>8} {_fmt_time(t_theirs):>8} {ratio} "
              f"{_fmt_mem(ours):>8} {_fmt_mem(theirs):>8}  {irreps_note:6}  {'; '.join(checks)}")
        sys.stdout.flush()
    print(f"\n{'all targets met' if not failures else f'{failures} target(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
