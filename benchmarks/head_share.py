"""The self-mix head's share of a training step, fused arithmetic against the e3nn modules.

Run: ``python -m benchmarks.head_share [--rounds 7] [--threads 1]``.

For each of four targets (polarizability ``ij=ji``, NMR ``ij`` per atom, piezoelectric
``ijk=ikj``, elastic), one XPaiNN model (default widths: ``256x0e+64x1o+32x2e`` out, 3 blocks)
with that one head, on 32 QM9-sized molecules (``backbone_speed.molecules(32)``), float32: CPU
time of a training step (forward and backward to all weights) of

- the backbone alone (loss on its node features),
- backbone + head, the head computed as now (``SelfMixHead.node_irreps``: ``compiler/head/_fused.py``),
- backbone + head, the head computed as before (``tests/compiler/_reference_head.py``: the same
  weights through e3nn's ``o3.Linear``/``o3.TensorProduct`` modules one after the other).

The head's share of a step is ``1 - backbone / (backbone + head)``, per round; the columns are
timed in turn in every round (reversed every other round); medians of ``--rounds`` rounds.  The
fused and the e3nn rows are checked to agree (float32, relative 1e-5) before timing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


TARGETS = {
    "polarizability `ij=ji`": "tensor polarizability { indices ij; symmetry ij = ji; pool sum }",
    "NMR `ij` per atom": "tensor nmr { indices ij; level atom }",
    "piezo `ijk=ikj`": "tensor piezo { indices ijk; symmetry ijk = ikj; pool mean }",
    "elastic": "tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij; pool mean }",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true",
                        help="the same after compile_for_speed() (backbone blocks and the fused "
                             "head compiled; no e3nn column)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import tsym
    from benchmarks.common import molecules, reference_node_irreps
    from tsym.runtime import keys
    from tsym.runtime.graph import collate

    graph = collate(molecules(32), 5.0, torch.float32)
    batch, n_graphs = graph[keys.BATCH], int(graph[keys.NUM_GRAPHS])
    print(f"tsym {tsym.__version__}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), {os.cpu_count()} cores; 32 molecules, {int(graph['num_atoms'].sum())} "
          f"atoms, {graph['edge_index'].shape[1]} edges; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")

    def step(model, head, node_rows):
        params = list(model.parameters())

        def run():
            feats = model.backbone(graph)[keys.NODE_FEATURES]
            loss = feats.square().mean()
            if head is not None:
                out = head.to_cartesian(head.pooled(node_rows(head, feats), batch, n_graphs))
                loss = loss + out.square().mean()
            torch.autograd.grad(loss, params, allow_unused=True)
        return run

    columns = {}
    for label, spec in TARGETS.items():
        model = tsym.build_model([spec], seed=0)
        (head,) = model.heads.values()
        with torch.no_grad():
            feats = model.backbone(graph)[keys.NODE_FEATURES]
            got, want = head.node_irreps(feats), reference_node_irreps(head, feats)
            err = float((got - want).abs().max() / want.abs().max())
        assert err <= 1e-5, f"{label}: fused and e3nn rows differ by {err:.1e}"
        if args.compile:
            model.compile_for_speed()
        columns[(label, "backbone")] = step(model, None, None)
        columns[(label, "fused")] = step(model, head, lambda h, f: h.node_irreps(f))
        if not args.compile:
            columns[(label, "e3nn")] = step(model, head, reference_node_irreps)
    for fn in columns.values():
        fn()  # warm-up
    times = {key: [] for key in columns}
    order = list(columns)
    for r in range(args.rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            start = time.process_time()
            columns[key]()
            times[key].append(1e3 * (time.process_time() - start))
    med = statistics.median
    print("\n| target | backbone step (ms) | + head, e3nn modules (before) | + head, fused (now) "
          "| head share before / now | head before / now (ms) |")
    print("|---|---|---|---|---|---|")
    for label in TARGETS:
        if args.compile:  # compiled: the fused head only
            bb, new = times[(label, "backbone")], times[(label, "fused")]
            print(f"| {label} (compiled) | {med(bb):.0f} | - | {med(new):.0f} | - / "
                  f"{100 * med([1 - b / t for b, t in zip(bb, new)]):.0f}% | - / "
                  f"{med([t - b for b, t in zip(bb, new)]):.0f} |")
            continue
        bb, old, new = (times[(label, k)] for k in ("backbone", "e3nn", "fused"))
        share_old = med([1 - b / t for b, t in zip(bb, old)])
        share_new = med([1 - b / t for b, t in zip(bb, new)])
        print(f"| {label} | {med(bb):.0f} | {med(old):.0f} | {med(new):.0f} | "
              f"{100 * share_old:.0f}% / {100 * share_new:.0f}% | "
              f"{med([t - b for b, t in zip(bb, old)]):.0f} / "
              f"{med([t - b for b, t in zip(bb, new)]):.0f} |")
    print(f"\nCPU ms, medians of {args.rounds} interleaved rounds; load average at the end "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
