"""The demo's generalisation: a random split against a split by molecule, and weight decay.

``tsym demo``'s data hold each molecule 5 times (its G2 geometry and 4 displaced copies), so a
random split scores the model on near-copies of its training structures.  Each variant trains
the demo config (:func:`tsym.cli.demo.demo_config`, 150 epochs) with a split and a weight decay,
evaluates the best checkpoint on its test split and prints the last training / validation loss
and the test metrics::

    OMP_NUM_THREADS=1 python -m benchmarks.demo_split --out /tmp/demo_split \\
        random:0.0 name:0.0 name:0.05 name:0.5 name:0.05:cartesian

A variant is ``SPLIT:WEIGHT_DECAY[:LOSS_SPACE]``; ``SPLIT`` is ``random`` or an ``atoms.info``
key for ``data.group_by`` (``name``: every molecule in one split); ``LOSS_SPACE`` ``irreps``
(default) or ``cartesian``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def run(variant: str, out: Path, epochs: int, seed: int) -> str:
    from tsym.cli.demo import demo_config, evaluate_test_split
    from tsym.runtime.training.loop import train

    how, wd, *loss = variant.split(":")
    cfg = demo_config(epochs, seed)
    cfg["optimiser"]["weight_decay"] = float(wd)
    cfg["data"]["group_by"] = None if how == "random" else how
    for head in cfg["heads"].values():
        head["loss_space"] = loss[0] if loss else "irreps"
    run_dir = out / (f"{how}_wd{wd}" + (f"_{loss[0]}" if loss else ""))
    t0 = time.perf_counter()
    if not (run_dir / "best.pt").is_file():
        train(cfg, run_dir)
    report = evaluate_test_split(run_dir)
    test = json.loads((run_dir / "split.json").read_text())["test"]
    epochs_ = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs_ = [r for r in epochs_ if r.get("kind") == "epoch"]
    heads = report.to_dict()["heads"]
    cells = " | ".join(f"{heads[h]['mae']:.4g}" for h in ("polarizability", "hyperpolarizability",
                                                            "nmr_shielding"))
    return (f"| {how} | {float(wd):g} | {loss[0] if loss else 'irreps'} | {len(test)} | {epochs_[-1]['train_loss']:.4f} | "
            f"{epochs_[-1]['valid_loss']:.4f} | {cells} | {time.perf_counter() - t0:.0f} s |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="+", help="SPLIT:WEIGHT_DECAY, e.g. random:0.0 name:0.05")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [run(v, a.out, a.epochs, a.seed) for v in a.variants]
    print("| split | weight decay | loss space | test structures | train loss (last) | valid loss (last) | "
          "test MAE polarizability | hyperpolarizability | NMR shielding | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
