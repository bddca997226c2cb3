"""CPU speed of XPaiNN (default widths) with the elastic, dielectric and polarizability heads.

Run: ``python -m benchmarks.backbone_speed [--quick] [--repeats N] [--threads T] [--compile]``.

1. Batches of 32 QM9-sized molecules (~17 atoms: the larger ase G2 / extra molecules and
   n-pentane to n-heptane, rattled) and of 16 crystals of ~40 atoms (supercells of 8 structure
   types, rattled): forward (no grad) and forward + backward (gradients of all weights) of the
   backbone alone and of the full model; structures per second and the heads' share of the time.
2. Scaling: one Si diamond supercell from ~100 to ~10,000 atoms, forward (no grad): time, edges
   and time per edge (flat if the cost is linear in the number of edges).

Every time is the median of ``--repeats`` runs after one warm-up run; graphs are built once,
outside the timed region (neighbour lists: ``benchmarks/neighbour_list.py``).  ``--quick`` uses
fewer repeats and stops the scaling series at ~1,700 atoms.  On a machine shared with other jobs,
pass ``--threads 1``: OpenMP threads competing for busy cores make times erratic.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch
from ase import Atoms
from ase.build import bulk

import tsym
from tsym.runtime.graph import collate

from benchmarks.common import CUTOFF, SPECS, crystals, molecules

# --------------------------------------------------------------------------- timing

def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward(module, graph):
    def run():
        with torch.no_grad():
            module(graph)
    return run


def forward_backward(module, graph, params):
    def run():
        out = module(graph)
        values = out.values() if isinstance(out, dict) else [out]
        loss = sum((v.float() ** 2).mean() for v in values if torch.is_floating_point(v)
                   and v.requires_grad)
        torch.autograd.grad(loss, params)
    return run


class BackboneOnly(torch.nn.Module):
    """The backbone with a trivial readout, so that backward has something to differentiate."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, graph):
        from tsym.runtime import keys
        return {"features": self.backbone(graph)[keys.NODE_FEATURES]}


def batch_table(model, name: str, structures: list[Atoms], repeats: int) -> None:
    graph = collate(structures, CUTOFF, torch.float32)
    n_atoms, n_edges = graph["num_atoms"].sum().item(), graph["edge_index"].shape[1]
    backbone = BackboneOnly(model.backbone)
    params, bb_params = list(model.parameters()), list(model.backbone.parameters())
    t = {
        "backbone fwd": median_time(forward(backbone, graph), repeats),
        "model fwd": median_time(forward(model, graph), repeats),
        "backbone fwd+bwd": median_time(forward_backward(backbone, graph, bb_params), repeats),
        "model fwd+bwd": median_time(forward_backward(model, graph, params), repeats),
    }
    n = len(structures)
    print(f"\n{name}: {n} structures, {n_atoms} atoms ({n_atoms / n:.1f} per structure), "
          f"{n_edges} edges ({n_edges / n_atoms:.1f} per atom)")
    print(f"  {'':18s} {'time (ms)':>10s} {'structures/s':>13s}")
    for key, value in t.items():
        print(f"  {key:18s} {1e3 * value:10.1f} {n / value:13.1f}")
    for mode in ("fwd", "fwd+bwd"):
        share = 1.0 - t[f"backbone {mode}"] / t[f"model {mode}"]
        print(f"  heads' share of model {mode}: {100 * share:.0f}%")


def scaling_table(model, repeats: int, quick: bool) -> None:
    si = bulk("Si", "diamond", a=5.43, cubic=True)  # 8 atoms
    repeats_list = [(3, 2, 2), (4, 4, 4), (6, 6, 6)] + ([] if quick else [(8, 8, 8), (10, 10, 12)])
    print(f"\nscaling: Si diamond supercells, cutoff {CUTOFF} A, model forward (no grad)")
    print(f"  {'atoms':>6s} {'edges':>8s} {'graph (s)':>10s} {'fwd (s)':>8s} "
          f"{'us/edge':>8s} {'us/atom':>8s}")
    for rep in repeats_list:
        atoms = si.repeat(rep)
        atoms.rattle(0.02, seed=0)
        start = time.perf_counter()
        graph = collate([atoms], CUTOFF, torch.float32)
        t_graph = time.perf_counter() - start
        n_edges = graph["edge_index"].shape[1]
        t = median_time(forward(model, graph), 1 if len(atoms) > 2000 else repeats)
        print(f"  {len(atoms):6d} {n_edges:8d} {t_graph:10.2f} {t:8.3f} "
              f"{1e6 * t / n_edges:8.2f} {1e6 * t / len(atoms):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats, scaling up to ~1,700 atoms")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true",
                        help="also time the model after compile_for_speed() (torch.compile)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = tsym.build_model(SPECS, backbone="xpainn", cutoff=CUTOFF)
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    n_heads = sum(p.numel() for p in model.heads.parameters())
    print(f"tsym {tsym.__version__}, torch {torch.__version__}, {platform.processor() or 'cpu'}, "
          f"{torch.get_num_threads()} threads ({os.cpu_count()} cores), float32")
    print(f"XPaiNN {model.backbone.irreps_out} x {len(model.backbone.messages)} blocks: "
          f"{n_backbone:,} parameters; heads {', '.join(model.heads)}: {n_heads:,} parameters")
    batch_table(model, "32 molecules", molecules(32), repeats)
    batch_table(model, "16 crystals", crystals(16), repeats)
    if args.compile:
        compiled = copy.deepcopy(model).compile_for_speed()
        graph = collate(crystals(16), CUTOFF, torch.float32)
        start = time.perf_counter()
        with torch.no_grad():
            want, got = model(graph), compiled(graph)
        worst = max(float((got[k] - w).abs().max() / w.abs().max()) for k, w in want.items())
        print(f"\nthe same after model.compile_for_speed() (torch.compile): first call (compiling) "
              f"{time.perf_counter() - start:.0f} s; max |compiled - eager| / max |eager| = "
              f"{worst:.1e} (float32)")
        batch_table(compiled, "32 molecules, compiled", molecules(32), repeats)
        batch_table(compiled, "16 crystals, compiled", crystals(16), repeats)
    scaling_table(model, repeats, args.quick)


if __name__ == "__main__":
    main()
