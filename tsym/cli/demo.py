"""``tsym demo``: the README's main job on the embedded default.

Compiles the polarizability, first-hyperpolarizability and NMR-shielding specs of the spec library
(``compiler/specs/``), trains a small XPaiNN with the three heads on the bundled
RHF/6-31G* data set (``tsym/runtime/data/assets/demo_molecules.extxyz``, 345 molecules; see its
``DEMO_DATA.md``), evaluates the best checkpoint on the held-out test split (molecules the model never
saw: ``data.group_by: name``), prints the metrics and writes parity plots.  A few minutes on 2 CPU cores.
"""
from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

from tsym.compiler import load_plans
from tsym.compiler.errors import TsymError

__all__ = ["register", "cmd_demo", "DEMO_SPECS", "demo_config", "evaluate_test_split"]

#: The demo's specs: names of the spec library (``compiler/specs/``).
DEMO_SPECS = ("polarizability", "hyperpolarizability", "nmr_shielding")


def demo_data_path() -> Path:
    return Path(str(resources.files("tsym.runtime.data").joinpath("assets", "demo_molecules.extxyz")))


def demo_config(epochs: int = 150, seed: int = 0) -> dict:
    """The training config of the demo (a plain dict, as a YAML file would give)."""
    return {
        "model": {
            "backbone": "xpainn",
            "backbone_kwargs": {"num_scalars": 64, "irreps": "32x0e+16x1o+8x2e", "num_blocks": 2},
            "head_kwargs": {"hidden_mul": 8, "mlp_hidden": 16},
            "cutoff": 5.0,
            "dtype": "float32",
        },
        "heads": {name: {"spec": name} for name in DEMO_SPECS},
        # the 5 geometries of a molecule share one split: the test molecules are new to the model
        "data": {"train": str(demo_data_path()), "valid_fraction": 0.1, "test_fraction": 0.1,
                 "split_seed": seed, "group_by": "name"},
        "optimiser": {"lr": 3.0e-3},  # weight_decay: the default
        "schedule": {"kind": "cosine", "warmup_steps": min(50, 10 * epochs), "min_lr_ratio": 0.02},
        "training": {"epochs": epochs, "batch_size": 16, "grad_clip": 10.0, "ema_decay": 0.99,
                     "seed": seed, "log_every": 0},  # a progress bar on a terminal
    }


def evaluate_test_split(run_dir: Path):
    """The best checkpoint of a run on the demo data, evaluated on its ``split.json`` test part;
    writes ``RUN_DIR/test_metrics.json`` and returns the :class:`EvalReport`."""
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import checkpoint_labels, load_model

    model = load_model(run_dir)
    labels = checkpoint_labels(run_dir, model)
    dataset = read_dataset(demo_data_path(), list(labels.values()), model.plans, verbose=False)
    split = json.loads((run_dir / "split.json").read_text())
    report = evaluate(model, dataset.subset(split["test"]), crystal_symmetry=False)
    (run_dir / "test_metrics.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def cmd_demo(args) -> int:
    # the runtime (torch, e3nn) loads when the command runs, not for `tsym --help`
    import torch

    from tsym.runtime.inference.plots import parity_plots
    from tsym.runtime.training.loop import train

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print("== 1. compile the specs")
    for name in DEMO_SPECS:
        plan = load_plans(name)[0]
        print(f"   {name:<20} indices {plan.indices:<4} level {plan.level:<9} irreps {plan.irreps}"
              f"  ({plan.num_components} components)")
    run_dir = Path(args.run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TsymError(f"{run_dir}: the run directory is not empty\n"
                        "hint: remove it, or pass another --run-dir")
    print(f"== 2. train XPaiNN + 3 heads on {demo_data_path().name} ({args.epochs} epochs) "
          f"-> {run_dir}")
    train(demo_config(args.epochs, args.seed), run_dir)
    print("== 3. evaluate the best checkpoint on the test split")
    report = evaluate_test_split(run_dir)
    print(report.summary())
    plots = parity_plots(report, run_dir / "plots")
    print(f"== test metrics: {run_dir / 'test_metrics.json'}")
    print(f"== parity plots ({len(plots)}): {run_dir / 'plots'}")
    print(f"== done in {time.perf_counter() - start:.0f} s")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="compile the demo specs, train on the bundled data, "
                                           "print test metrics")
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest for this small model on 2 shared cores)")
    p.set_defaults(func=cmd_demo)
