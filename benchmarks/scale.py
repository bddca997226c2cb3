"""Scale: time and peak memory of XPaiNN + heads against the number of atoms in one periodic cell.

Run: ``python -m benchmarks.scale [--threads 1] [--quick] [--max-atoms N] [--edge-chunk N |
--no-chunk] [--no-train] [--train-max-atoms N] [--budget-min 25]``.

The structure is a Si diamond supercell (cutoff 5 Angstrom, 28 edges per atom), from ~100 to
~10^5 atoms; the model is the one of ``benchmarks/backbone_speed.py`` (XPaiNN with default widths
plus the elastic, dielectric and polarizability heads, float32).  Every size runs in a fresh
subprocess, so that the peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) belongs to
that size alone.  The child measures:

* baseline RSS: the resident memory right after imports and building the model;
* graph build: one :func:`tsym.runtime.graph.collate` call (neighbour list included) and the peak
  RSS after it;
* forward: the model under ``torch.inference_mode`` (after a warm-up on a 96-atom cell), the median
  of up to 5 runs when one run takes under 2 s, else one run; then the peak RSS;
* with training (sizes up to ``--train-max-atoms``, separate subprocesses): forward + backward
  (gradients of all weights of a squared-output loss), same rules.

Sizes run in increasing order.  Before each size the memory (linear fit of peak minus baseline
against atoms) and time (log-log fit) measured so far predict its cost; it is skipped, and
reported as predicted, when the predicted peak exceeds ``--mem-limit-gb`` (default 16 GB, and never
more than 85 % of the memory available now) or its predicted time exceeds ``--time-limit-min``
(default 8) or the time left of ``--budget-min``.  At the end: fits of time and memory against
atoms, and the largest cell predicted to fit in ``--usable-gb`` (default 22 GB: 24 GB less ~2 GB
for the operating system).  GB = 10^9 bytes, GiB = 2^30 bytes.

``--edge-chunk N`` sets ``model.backbone.edge_chunk`` when the backbone has that attribute
(edges processed in chunks of N); otherwise it says so and runs without it.  ``--no-chunk`` sets
it to more edges than any structure has: every message block takes all edges at once (the
behaviour before edge chunking).  Without either, the backbone's default applies.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["elastic", "dielectric", "polarizability"]  # library names
CUTOFF = 5.0
GIB = 2.0 ** 30
GB = 1e9
# Si diamond cubic cell (8 atoms) repeated: ~10^2, 3x10^2, 10^3, 3x10^3, 10^4, 3x10^4, 10^5 atoms
REPEATS = [(2, 2, 3), (3, 3, 4), (5, 5, 5), (7, 7, 8), (11, 11, 10), (15, 15, 17), (23, 23, 24),
           (31, 31, 32), (40, 40, 40)]  # then ~2.5x10^5 and ~5x10^5 atoms, if they fit
QUICK_MAX_ATOMS = 3500
NO_CHUNK = 2 ** 40  # more edges than any structure here: the unchunked path


# --------------------------------------------------------------------------- child process

def _rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _si(repeat):
    from ase.build import bulk
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(tuple(repeat))
    atoms.rattle(0.02, seed=0)
    return atoms


def _timed(fn, min_total: float = 2.0, max_runs: int = 5) -> tuple[float, int]:
    """Median time of ``fn``: one run, repeated (up to ``max_runs``) while runs are short."""
    times = []
    while True:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if len(times) >= max_runs or sum(times) >= min_total:
            return statistics.median(times), len(times)


def child(mode: str, repeat: list[int], threads: int, edge_chunk: int | None) -> dict:
    """Measure one size in this (fresh) process; ``mode`` is ``"fwd"`` or ``"train"``."""
    import torch

    import tsym
    from tsym.runtime.graph import collate

    torch.set_num_threads(threads)
    model = tsym.build_model(SPECS, backbone="xpainn", cutoff=CUTOFF)
    if edge_chunk is not None and hasattr(model.backbone, "edge_chunk"):
        setattr(model.backbone, "edge_chunk", edge_chunk)
    chunk = getattr(model.backbone, "edge_chunk", "n/a")
    baseline = _rss_bytes()
    params = list(model.parameters())

    def forward(graph):
        def run():
            with torch.inference_mode():
                model(graph)
        return run

    def forward_backward(graph):
        def run():
            out = model(graph)
            values = out.values() if isinstance(out, dict) else [out]
            loss = sum((v.float() ** 2).mean() for v in values
                       if torch.is_floating_point(v) and v.requires_grad)
            torch.autograd.grad(loss, params)
        return run

    step = forward if mode == "fwd" else forward_backward
    step(collate([_si((2, 2, 3))], CUTOFF, torch.float32))()  # warm-up on 96 atoms
    atoms = _si(repeat)
    start = time.perf_counter()
    graph = collate([atoms], CUTOFF, torch.float32)
    t_graph = time.perf_counter() - start
    peak_graph = _peak_bytes()
    t_step, runs = _timed(step(graph))
    return {"mode": mode, "atoms": len(atoms), "edges": int(graph["edge_index"].shape[1]),
            "graph_s": t_graph, "step_s": t_step, "runs": runs, "baseline": baseline,
            "peak_graph": peak_graph, "peak": _peak_bytes(), "threads": torch.get_num_threads(),
            "edge_chunk": chunk}


# --------------------------------------------------------------------------- fits

def power_fit(x, y) -> tuple[float, float]:
    """Least squares of log y = log c + k log x; returns (c, k)."""
    k, logc = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(logc)), float(k)


def linear_fit(x, y) -> tuple[float, float]:
    """Least squares of y = a + b x; returns (a, b); with one point, a = 0."""
    if len(x) == 1:
        return 0.0, float(y[0] / x[0])
    b, a = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(a), float(b)


def predict(rows: list[dict], atoms: int) -> tuple[float, float]:
    """Predicted (peak RSS bytes, seconds of graph build + timed step) for ``atoms``."""
    n = [r["atoms"] for r in rows]
    a, b = linear_fit(n, [r["peak"] - r["baseline"] for r in rows])
    peak = max(r["baseline"] for r in rows) + max(a + b * atoms, b * atoms)
    tail = rows[-3:] if len(rows) >= 3 else rows
    if len(tail) >= 2:
        c, k = power_fit([r["atoms"] for r in tail], [r["graph_s"] + r["step_s"] for r in tail])
        seconds = c * atoms ** max(k, 1.0)
    else:
        seconds = (tail[0]["graph_s"] + tail[0]["step_s"]) * atoms / tail[0]["atoms"]
    return peak, seconds


# --------------------------------------------------------------------------- parent

def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def run_child(mode: str, repeat, args, timeout: float) -> dict | None:
    """Measure one size in a fresh subprocess; None when it ran past ``timeout`` seconds."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--child", mode, ",".join(map(str, repeat)),
           "--threads", str(args.threads)]
    if args.edge_chunk is not None:
        cmd += ["--edge-chunk", str(args.edge_chunk)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} {repeat} failed (rc {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def series(mode: str, sizes, args, deadline: float) -> tuple[list[dict], list[tuple[int, float, float, str]]]:
    """Run ``mode`` for each size in order; returns measured rows and skipped predictions."""
    rows, skipped = [], []
    limit = args.mem_limit_gb * GB
    for repeat in sizes:
        atoms = 8 * int(np.prod(repeat))
        if rows:
            peak, seconds = predict(rows, atoms)
            cap = min(limit, 0.85 * mem_available())
            left = deadline - time.perf_counter()
            why = ("memory" if peak > cap else "time" if seconds > 60 * args.time_limit_min
                   else "budget" if seconds > left else "")
            if why:
                skipped.append((atoms, peak, seconds, why))
                print(f"  [{mode}] {atoms} atoms skipped ({why}): predicted peak "
                      f"{peak / GIB:.1f} GiB (cap {cap / GIB:.1f}), {seconds:.0f} s "
                      f"(left {left:.0f} s)", flush=True)
                continue
        timeout = max(60.0, min(90 * args.time_limit_min, deadline - time.perf_counter()))
        row = run_child(mode, repeat, args, timeout)
        if row is None:
            skipped.append((atoms, float("nan"), timeout, f"killed after {timeout:.0f} s"))
            print(f"  [{mode}] {atoms} atoms killed after {timeout:.0f} s", flush=True)
            break
        rows.append(row)
        print(f"  [{mode}] {row['atoms']} atoms, {row['edges']} edges: graph "
              f"{row['graph_s']:.2f} s, step {row['step_s']:.3f} s ({row['runs']} runs), peak "
              f"{row['peak'] / GIB:.2f} GiB (baseline {row['baseline'] / GIB:.2f}, after graph "
              f"build {row['peak_graph'] / GIB:.2f})", flush=True)
    return rows, skipped


def table(rows, skipped, mode: str) -> None:
    step = "forward s" if mode == "fwd" else "fwd+bwd s"
    print(f"\n| atoms | edges | graph build s | {step} | us/edge | peak RSS GiB | "
          f"peak - baseline GiB | bytes/edge |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = r["peak"] - r["baseline"]
        print(f"| {r['atoms']:,} | {r['edges']:,} | {r['graph_s']:.3f} | {r['step_s']:.3f} | "
              f"{1e6 * r['step_s'] / r['edges']:.1f} | {r['peak'] / GIB:.2f} | "
              f"{extra / GIB:.2f} | {extra / r['edges']:,.0f} |")
    per_atom = rows[-1]["edges"] / rows[-1]["atoms"] if rows else 28.0
    for atoms, peak, seconds, why in skipped:
        if np.isnan(peak):  # ran past its time limit
            print(f"| {atoms:,} | ~{per_atom * atoms:,.0f} | - | > {seconds:.0f} ({why}) | - | - "
                  f"| - | - |")
            continue
        print(f"| {atoms:,} | ~{per_atom * atoms:,.0f} | - | ~{seconds:.0f} (predicted) | - | "
              f"~{peak / GIB:.1f} (predicted) | - | - (not run: {why}) |")


def fits(rows, mode: str, usable: float) -> None:
    if len(rows) < 2:
        print(f"\n{mode}: fewer than 2 sizes, no fit")
        return
    n = np.array([r["atoms"] for r in rows], float)
    big = n >= 1000
    t = np.array([r["step_s"] for r in rows])
    g = np.array([r["graph_s"] for r in rows])
    extra = np.array([r["peak"] - r["baseline"] for r in rows], float)
    edges = np.array([r["edges"] for r in rows], float)
    baseline = max(r["baseline"] for r in rows)
    print(f"\nfits ({mode}), least squares:")
    c, k = power_fit(n, t)
    line = f"  step time ~ atoms^{k:.2f} (all sizes)"
    if big.sum() >= 2:
        c, k = power_fit(n[big], t[big])
        line += f", ~ atoms^{k:.2f} (>= 1000 atoms)"
    print(line)
    if big.sum() >= 2:
        print(f"  graph build ~ atoms^{power_fit(n[big], g[big])[1]:.2f} (>= 1000 atoms)")
    _, km = power_fit(n[big] if big.sum() >= 2 else n, extra[big] if big.sum() >= 2 else extra)
    a, b = linear_fit(n, extra)
    print(f"  peak - baseline ~ atoms^{km:.2f}; linear: {a / 2**20:.0f} MiB + {b / 1024:.1f} KiB "
          f"per atom ({b / (edges / n).mean():,.0f} bytes per edge); baseline "
          f"{baseline / GIB:.2f} GiB")
    n_max = (usable - baseline - a) / b
    print(f"  largest Si cell under {usable / GB:.0f} GB usable (24 GB less ~2 GB for the OS): "
          f"~{n_max:,.0f} atoms (~{n_max * (edges / n).mean():,.0f} edges), predicted "
          f"{mode} time ~{c * n_max ** k:,.0f} s (extrapolated)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help=f"sizes up to ~{QUICK_MAX_ATOMS}")
    parser.add_argument("--max-atoms", type=int, default=None)
    parser.add_argument("--edge-chunk", type=int, default=None,
                        help="set model.backbone.edge_chunk (if the backbone has it)")
    parser.add_argument("--no-chunk", action="store_true",
                        help=f"all edges at once: edge_chunk = {NO_CHUNK} (if the backbone has it)")
    parser.add_argument("--no-train", action="store_true", help="skip forward+backward")
    parser.add_argument("--train-max-atoms", type=int, default=10_000)
    parser.add_argument("--mem-limit-gb", type=float, default=16.0)
    parser.add_argument("--time-limit-min", type=float, default=8.0)
    parser.add_argument("--budget-min", type=float, default=25.0)
    parser.add_argument("--usable-gb", type=float, default=22.0)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_chunk:
        args.edge_chunk = NO_CHUNK
    if args.child:
        repeat = [int(x) for x in args.child[1].split(",")]
        print(json.dumps(child(args.child[0], repeat, args.threads, args.edge_chunk)))
        return

    start = time.perf_counter()
    deadline = start + 60 * args.budget_min
    max_atoms = args.max_atoms or (QUICK_MAX_ATOMS if args.quick else 10 ** 6)
    sizes = [r for r in REPEATS if 8 * np.prod(r) <= max_atoms]
    import torch

    import tsym
    model = tsym.build_model(SPECS, backbone="xpainn", cutoff=CUTOFF)
    if not hasattr(model.backbone, "edge_chunk"):
        chunk = ("not supported by this backbone (no `edge_chunk` attribute): all edges at once"
                 + ("" if args.edge_chunk is None else f"; --edge-chunk {args.edge_chunk} ignored"))
    elif args.edge_chunk is None:
        chunk = f"backbone default ({model.backbone.edge_chunk} edges)"
    else:
        chunk = "off (all edges at once)" if args.no_chunk else f"{args.edge_chunk}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M} UTC; {platform.system()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
          f"{mem_available() / GIB:.1f} GiB available; Python {platform.python_version()}, "
          f"torch {torch.__version__}, tsym {tsym.__version__}; {args.threads} thread(s), float32")
    print(f"XPaiNN {model.backbone.irreps_out} x {len(model.backbone.messages)} blocks + heads "
          f"{', '.join(model.heads)}; Si diamond, cutoff {CUTOFF} A; edge_chunk: {chunk}")
    del model
    print("\nforward (inference_mode):", flush=True)
    fwd, fwd_skipped = series("fwd", sizes, args, deadline)
    train, train_skipped = [], []
    if not args.no_train:
        print("\nforward + backward (all weight gradients):", flush=True)
        train_sizes = [r for r in sizes if 8 * np.prod(r) <= args.train_max_atoms]
        train, train_skipped = series("train", train_sizes, args, deadline)
    usable = args.usable_gb * GB
    print("\nforward without gradients:")
    table(fwd, fwd_skipped, "fwd")
    fits(fwd, "forward", usable)
    if train or train_skipped:
        print("\nforward + backward:")
        table(train, train_skipped, "train")
        fits(train, "forward+backward", usable)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - start:.0f} s; load average at the end {load}")


if __name__ == "__main__":
    main()
