"""Cost of the Cartesian reconstruction of a head: tsym's cached basis against e3nn's ``CartesianTensor``.

Run: ``python -m benchmarks.head_cost [--quick] [--threads T] [--repeats N]``.

For the dielectric (``ij=ji``), piezoelectric (``ijk=ikj``) and elastic (``ijkl=jikl=ijlk=klij``)
tensors, at 10^4 and 10^6 tensors (``--quick``: 10^4 only), in float32 and float64, in one run:

- tsym: ``plan.to_cartesian(x)`` (``[n, irreps.dim] -> [n, 3, ..., 3]``, a matmul with the
  change of basis cached in the plan) and ``plan.from_cartesian(t)``;
- e3nn 0.6, as users call it: ``CartesianTensor(formula).to_cartesian(x)``, which rebuilds its
  ``ReducedTensorProducts`` basis on every call ("uncached");
- e3nn with the basis built once: ``rtp = ct.reduced_tensor_products(x)`` (``x`` only gives the
  dtype: without it the basis is float32 and a float64 ``x`` fails), then
  ``ct.to_cartesian(x, rtp)`` and ``ct.from_cartesian(t, rtp)`` ("cached").

Every time is the median of ``--repeats`` (5) samples after one warm-up call (a sample averages
enough consecutive calls to last 20 ms; the five functions are sampled in turn within each round);
the uncached e3nn call is sampled 3 times at 10^6.  e3nn orders its irreps differently from tsym, so values are not
compared: each output is checked for its shape and for the declared symmetry (on the first 1000
tensors).  A combination whose inputs and outputs would need more than ``--max-gb`` (2 GB) is
skipped and reported.  On a machine shared with other jobs, pass ``--threads 1``.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import time

import torch

#: (label, e3nn formula); the tsym spec has the same indices and symmetry equations
SPECS = [
    ("dielectric", "ij=ji"),
    ("piezoelectric", "ijk=ikj"),
    ("elastic", "ijkl=jikl=ijlk=klij"),
]
SLOW_N = 10**6  # at and above this size, the uncached e3nn call is repeated fewer times
SLOW_REPEATS = 3
CHECK_ROWS = 1000


def spec_text(formula: str) -> str:
    """``"ij=ji"`` -> ``"tensor t { indices ij; symmetry ij = ji }"``."""
    terms = formula.split("=")
    return "tensor t { indices " + terms[0] + "; symmetry " + " = ".join(terms) + " }"


def permutations(formula: str) -> list[tuple[int, ...]]:
    """The index permutations of the formula's equations: ``"ijk=ikj"`` -> ``[(0, 2, 1)]``."""
    terms = formula.split("=")
    first = terms[0]
    return [tuple(first.index(c) for c in term) for term in terms[1:]]


def check(t: torch.Tensor, n: int, formula: str, who: str) -> None:
    """Shape ``[n, 3, ..., 3]`` and ``T = T.permute(p)`` for every equation of ``formula``."""
    order = len(formula.split("=")[0])
    if tuple(t.shape) != (n,) + (3,) * order:
        raise RuntimeError(f"{who}: shape {tuple(t.shape)}, expected {(n,) + (3,) * order}")
    head = t[:CHECK_ROWS]  # [m, 3, ..., 3]
    scale = head.abs().max().item()
    tol = (1e-5 if t.dtype == torch.float32 else 1e-12) * max(scale, 1.0)
    for perm in permutations(formula):
        err = (head - head.permute((0,) + tuple(p + 1 for p in perm))).abs().max().item()
        if err > tol:
            raise RuntimeError(f"{who}: symmetry {perm} broken by {err:.2e} (tolerance {tol:.1e})")


def median_ms(fns: dict, repeats: dict, sample_s: float = 0.02) -> dict:
    """Median wall time of one call of each ``fns[name]()`` in ms, after one warm-up call each.

    A sample times ``k`` consecutive calls, ``k`` chosen from the warm-up so that a sample lasts at
    least ``sample_s`` (sub-millisecond calls are otherwise dominated by cold caches and timer
    noise); ``k = 1`` for functions with fewer repeats than the rest (the slow ones).  Samples are
    interleaved, one per function per round, in reversed order every other round, so that a drift
    in the load of the machine does not favour whichever is timed first.
    """
    most = max(repeats.values())
    number = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        warm = time.perf_counter() - start
        number[name] = 1 if repeats[name] < most else max(1, math.ceil(sample_s / max(warm, 1e-7)))
    times = {name: [] for name in fns}
    for round_ in range(most):
        names = list(fns) if round_ % 2 == 0 else list(reversed(fns))
        for name in names:
            if len(times[name]) < repeats[name]:
                fn, k = fns[name], number[name]
                start = time.perf_counter()
                for _ in range(k):
                    fn()
                times[name].append((time.perf_counter() - start) / k)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def needed_bytes(dim: int, order: int, n: int, dtype: torch.dtype) -> int:
    """Input ``[n, dim]``, a kept Cartesian tensor and a fresh output, both ``[n, 3^order]``."""
    item = torch.empty((), dtype=dtype).element_size()
    return n * (dim + 2 * 3**order) * item


def measure(label: str, formula: str, n: int, dtype: torch.dtype, repeats: int, max_bytes: float) -> dict:
    from e3nn.io import CartesianTensor

    import tsym

    (plan,) = tsym.compile_text(spec_text(formula))
    row = {"spec": f"{label} `{formula}`", "n": n, "dtype": str(dtype).replace("torch.", "")}
    need = needed_bytes(plan.num_components, plan.order, n, dtype)
    row["gb"] = need / 1e9
    if need > max_bytes:
        row["skipped"] = f"needs ~{need / 1e9:.1f} GB"
        return row
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, plan.num_components, generator=gen, dtype=torch.float64).to(dtype)  # [n, dim]
    ct = CartesianTensor(formula)
    if ct.dim != plan.num_components:
        raise RuntimeError(f"{label}: e3nn dim {ct.dim}, tsym dim {plan.num_components}")

    t = plan.to_cartesian(x)  # [n, 3, ..., 3]
    check(t, n, formula, "tsym to_cartesian")
    back = plan.from_cartesian(t)  # [n, dim]
    if tuple(back.shape) != (n, plan.num_components):
        raise RuntimeError(f"tsym from_cartesian: shape {tuple(back.shape)}")
    del back
    rtp = ct.reduced_tensor_products(x)  # basis built once, in x's dtype
    out = ct.to_cartesian(x, rtp)
    check(out, n, formula, "e3nn to_cartesian")
    del out

    slow = SLOW_REPEATS if n >= SLOW_N else repeats
    fns = {
        "tsym_to": lambda: plan.to_cartesian(x),
        "e3nn_to": lambda: ct.to_cartesian(x, rtp),
        "tsym_from": lambda: plan.from_cartesian(t),
        "e3nn_from": lambda: ct.from_cartesian(t, rtp),
        "e3nn_to_uncached": lambda: ct.to_cartesian(x),
    }
    row.update(median_ms(fns, {name: slow if name == "e3nn_to_uncached" else repeats for name in fns}))
    row["uncached_repeats"] = slow
    return row


def machine_info(threads: int) -> list[str]:
    import e3nn

    import tsym

    return [
        f"date      {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine   {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})",
        f"python    {platform.python_version()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, --threads {threads}); e3nn {e3nn.__version__}; "
        f"tsym {tsym.__version__}",
    ]


def table(rows: list[dict]) -> list[str]:
    head = ("| spec | n | dtype | tsym to ms | e3nn to cached ms | e3nn to uncached ms | "
            "cached/tsym | uncached/tsym | tsym from ms | e3nn from cached ms | e3nn from/tsym |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        lead = f"| {r['spec']} | {r['n']:.0e} | {r['dtype']} |"
        if "skipped" in r:
            lines.append(lead + f" skipped ({r['skipped']}) |" + " - |" * 7)
            continue
        unc = f"{r['e3nn_to_uncached']:.2f}" + ("" if r["uncached_repeats"] >= 5 else f" ({r['uncached_repeats']} runs)")
        lines.append(
            lead
            + f" {r['tsym_to']:.3f} | {r['e3nn_to']:.3f} | {unc} | {r['e3nn_to'] / r['tsym_to']:.2f} |"
            f" {r['e3nn_to_uncached'] / r['tsym_to']:.3g} | {r['tsym_from']:.3f} | {r['e3nn_from']:.3f} |"
            f" {r['e3nn_from'] / r['tsym_from']:.2f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^4 tensors only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-gb", type=float, default=2.0, help="skip combinations needing more")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [10**4] if args.quick else [10**4, 10**6]
    print("\n".join(machine_info(args.threads or torch.get_num_threads())))
    rows = []
    for label, formula in SPECS:
        for n in sizes:
            for dtype in (torch.float32, torch.float64):
                rows.append(measure(label, formula, n, dtype, args.repeats, args.max_gb * 1e9))
                r = rows[-1]
                print(f"  done {label} n={n:.0e} {r['dtype']} (~{r['gb']:.2f} GB)"
                      + (f" SKIPPED: {r['skipped']}" if "skipped" in r else ""), flush=True)
    print()
    print("\n".join(table(rows)))
    print()
    print("ms = median wall time of one call for all n tensors; ratios > 1: e3nn slower. Shapes and "
          f"the declared symmetries of both outputs checked (first {CHECK_ROWS} tensors).")
    skipped = [r for r in rows if "skipped" in r]
    print(f"skipped (> {args.max_gb} GB): " + (", ".join(f"{r['spec']} n={r['n']:.0e} {r['dtype']}"
                                                       for r in skipped) or "none"))


if __name__ == "__main__":
    main()
