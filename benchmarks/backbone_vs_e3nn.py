"""XPaiNN: where the time goes, and tsym's implementation against the same network in plain e3nn.

Run: ``python -m benchmarks.backbone_vs_e3nn [--threads 1] [--repeats 7] [--no-compile]``.

1. **Same function.**  ``_naive_xpainn.NaiveXPaiNN`` is the XPaiNN architecture written the
   straightforward way with e3nn modules (``o3.TensorProduct`` gates, ``o3.Norm``,
   ``o3.ElementwiseTensorProduct``, ``x[src]`` gathers, one pass over all edges), sharing the
   weights of the tsym backbone; their node features are compared in float64 first.
2. **Profile** of the tsym model (default widths + elastic, dielectric and polarizability heads)
   on the two batches: graph construction (neighbour list + batching), then the forward time of
   each stage (edge embedding, element embedding, message blocks, update blocks, heads; module
   hooks, 1 thread so the clock is the work), and the backward pass.
3. **Throughput**, structures per second, of the backbone alone for 32 QM9-sized molecules and
   16 crystals of ~40 atoms (the batches of ``backbone_speed.py``): inference (no gradients) and a
   training step (forward, backward, AdamW step), for the naive e3nn version, tsym eager and tsym
   with ``compile_blocks()`` (``torch.compile`` of the blocks; skipped with
   ``--no-compile``).  The variants are timed in turn within each round (so a busy machine slows
   all of them alike) and the median over rounds is reported, with ratios to the naive version.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

import tsym  # noqa: E402
from tsym.runtime import keys  # noqa: E402
from tsym.runtime.nn.xpainn import XPaiNN  # noqa: E402
from tsym.runtime.graph import collate  # noqa: E402
from tsym.runtime.equivariance import default_dtype  # noqa: E402

from benchmarks._naive_xpainn import NaiveXPaiNN  # noqa: E402
from benchmarks.common import CUTOFF, SPECS, crystals, molecules  # noqa: E402



def check_same_function(model) -> float:
    """Max |naive - tsym| / max |tsym| of the node features, float64, on 4 crystals."""
    with default_dtype(torch.float64):  # e3nn builds its constants in the default dtype
        ref = XPaiNN(cutoff=CUTOFF)  # the defaults of tsym.build_model's backbone
        ref.load_state_dict(model.backbone.state_dict())
        with torch.no_grad():  # perturb the zero-initialised biases so every term is exercised
            for p in ref.parameters():
                p.add_(0.05 * torch.randn_like(p))
        naive = NaiveXPaiNN(ref)
    graph = collate(crystals(4), CUTOFF, torch.float64)
    with torch.no_grad():
        want = ref(graph)[keys.NODE_FEATURES]
        got = naive(graph)[keys.NODE_FEATURES]
    return ((got - want).abs().max() / want.abs().max()).item()


def profile(model, structures, repeats: int) -> dict[str, float]:
    """Median seconds per stage: graph, forward stages (hooks), backward, of one training pass."""
    bb = model.backbone
    stages = {"edge embedding": [bb.edge_embedding], "element embedding": [bb.node_embedding],
              "messages": list(bb.messages), "updates": list(bb.updates),
              "heads": list(model.heads.values())}
    clock: dict[str, float] = {}
    handles = []
    for name, modules in stages.items():
        for module in modules:
            def pre(mod, args, _name=name):
                mod._tsym_t0 = time.perf_counter()

            def post(mod, args, out, _name=name):
                clock[_name] = clock.get(_name, 0.0) + time.perf_counter() - mod._tsym_t0
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    rows: dict[str, list[float]] = {}
    params = list(model.parameters())
    for r in range(repeats + 1):
        clock.clear()
        start = time.perf_counter()
        graph = collate(structures, CUTOFF, torch.float32)
        t_graph = time.perf_counter() - start
        start = time.perf_counter()
        out = model(graph)
        t_fwd = time.perf_counter() - start
        loss = sum((v ** 2).mean() for k, v in out.items() if k in model.heads)
        start = time.perf_counter()
        torch.autograd.grad(loss, params)
        t_bwd = time.perf_counter() - start
        if r == 0:
            continue  # warm-up
        sample = {"graph (neighbour list)": t_graph, **clock,
                  "other forward": t_fwd - sum(clock.values()), "backward (all stages)": t_bwd}
        for key, value in sample.items():
            rows.setdefault(key, []).append(value)
    for h in handles:
        h.remove()
    return {key: statistics.median(values) for key, values in rows.items()}


def _loss(out):
    return (out[keys.NODE_FEATURES] ** 2).mean()


def throughput(variants: dict, structures, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds per batch for each variant: inference and training step, timed in turn."""
    graph = collate(structures, CUTOFF, torch.float32)
    runs = {}
    for name, net in variants.items():
        opt = torch.optim.AdamW(net.parameters(), lr=1e-6)

        def infer(net=net):
            with torch.no_grad():
                net(graph)

        def train(net=net, opt=opt):
            opt.zero_grad(set_to_none=True)
            _loss(net(graph)).backward()
            opt.step()
        runs[name] = {"inference": infer, "training step": train}
    times = {name: {mode: [] for mode in fns} for name, fns in runs.items()}
    for r in range(repeats + 1):
        for name, fns in runs.items():
            for mode, fn in fns.items():
                start = time.perf_counter()
                fn()
                if r:  # round 0 is the warm-up
                    times[name][mode].append(time.perf_counter() - start)
    return {name: {mode: statistics.median(v) for mode, v in modes.items()}
            for name, modes in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = tsym.build_model(SPECS, backbone="xpainn", cutoff=CUTOFF)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; torch {torch.__version__} with "
          f"{torch.get_num_threads()} thread(s); float32; XPaiNN {model.backbone.irreps_out} x "
          f"{len(model.backbone.messages)} blocks, "
          f"{sum(p.numel() for p in model.backbone.parameters()):,} parameters")

    print(f"\nsame function: max |naive e3nn - tsym| / max |tsym| = {check_same_function(model):.1e}"
          " (float64)")

    batches = {"32 molecules": molecules(32), "16 crystals": crystals(16)}
    print("\n### Profile of the tsym model (eager), one training pass, ms (share)\n")
    profiles = {name: profile(model, st, args.repeats) for name, st in batches.items()}
    print("| stage | " + " | ".join(profiles) + " |")
    print("|---|" + "---|" * len(profiles))
    for stage in next(iter(profiles.values())):
        cells = []
        for prof in profiles.values():
            total = sum(prof.values())
            cells.append(f"{1e3 * prof[stage]:.1f} ({100 * prof[stage] / total:.0f}%)")
        print(f"| {stage} | " + " | ".join(cells) + " |")

    variants = {"naive e3nn": NaiveXPaiNN(model.backbone), "tsym": model.backbone}
    if not args.no_compile:
        # a fresh inductor cache, so that the compile time below is that of a first run
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="tsym-inductor-")
        compiled = copy.deepcopy(model.backbone).compile_blocks()
        start = time.perf_counter()
        for st in batches.values():  # compile for gradients on and off
            graph = collate(st, CUTOFF, torch.float32)
            _loss(compiled(graph)).backward()
            with torch.no_grad():
                compiled(graph)
        print(f"\ncompile_blocks(): first calls (compilation) took "
              f"{time.perf_counter() - start:.0f} s")
        variants["tsym compiled"] = compiled
    print("\n### Throughput of the backbone, structures/s (ratio to naive e3nn)\n")
    print("| batch | mode | " + " | ".join(variants) + " |")
    print("|---|---|" + "---|" * len(variants))
    for name, st in batches.items():
        times = throughput(variants, st, args.repeats)
        for mode in ("inference", "training step"):
            base = times["naive e3nn"][mode]
            cells = [f"{len(st) / times[v][mode]:.1f} ({base / times[v][mode]:.2f}x)"
                     for v in variants]
            print(f"| {name} | {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
