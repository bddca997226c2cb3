"""Accuracy of tsym's self-mix head against two baseline heads, same backbone, data and budget.

Heads (``model.head_kwargs.kind``, see :mod:`tsym.runtime.nn.heads`):

* ``selfmix``: tsym's node-wise self-mix head (the default);
* ``linear``: one equivariant ``o3.Linear`` per node, e3nn ``CartesianTensor`` style (target irreps
  absent from the backbone's ``l <= 2`` features, e.g. the ``3o`` of a hyperpolarizability, stay 0);
* ``invariant``: an MLP of the ``0e`` features predicting the ``3^n`` Cartesian components,
  projected onto the declared symmetry, not rotation-equivariant.

Every kind is trained with the same config (split, epochs, optimiser, schedule, backbone, seed)
by ``tsym.runtime.training.loop.train``; the best checkpoint is evaluated on the test split and on a copy of
the test split in which every structure (positions, cell) and its labels (``R^{(x)n}``) are
rotated by a random proper rotation of its own.  An equivariant head gives the same errors on both
up to float32 rounding; the invariant baseline predicts the unrotated tensor and loses.

Data sets:

* ``demo``: the bundled RHF/6-31G* set of ``tsym demo`` (polarizability, hyperpolarizability,
  nmr_shielding), the demo's config with ``--epochs``;
* ``dielectric``: the dielectric tensors of becs_epsilon_e3nn, when ``TSYM_SHARED_DATA`` is set
  (converted with ``tsym.runtime.data.convert``; one-hot embedding up to Z = 94).

Run::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy --epochs 40 [--only demo] [--kinds linear]

and one markdown table is printed (test MAE and RMSE over Cartesian components, median over items
of the error's Frobenius norm, per-l RMSE of the irreps coordinates, rotated-test MAE and RMSE,
training wall time per run).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import markdown_table

KINDS = ("selfmix", "linear", "invariant")
DATASETS = ("demo", "dielectric")


def demo_setup(epochs: int, seed: int, work: Path) -> dict:
    from tsym.cli.demo import demo_config

    return demo_config(epochs, seed)


def dielectric_setup(epochs: int, seed: int, work: Path) -> dict | None:
    """The becs_epsilon_e3nn dielectric tensors as a config, or None without shared data."""
    root = os.environ.get("TSYM_SHARED_DATA")
    if not root:
        return None
    source = Path(root) / "becs_epsilon_e3nn" / "phonon_becs_epsilon.xyz"
    if not source.is_file():
        print(f"# no {source}: dielectric skipped")
        return None
    from tsym.runtime.data.convert import convert, write_extxyz

    frames, _ = convert("becs_epsilon_e3nn", source)
    path = work / "becs_epsilon.extxyz"
    write_extxyz(path, frames)
    spec = "dielectric"  # the library spec
    return {
        "model": {"backbone": "xpainn",
                  "backbone_kwargs": {"num_scalars": 64, "irreps": "32x0e+16x1o+8x2e",
                                      "num_blocks": 2, "embedding": "onehot", "max_z": 94},
                  "head_kwargs": {"hidden_mul": 8, "mlp_hidden": 16},
                  "cutoff": 5.0, "dtype": "float32"},
        "heads": {"dielectric": {"spec": spec}},
        "data": {"train": str(path), "valid_fraction": 0.1, "test_fraction": 0.1,
                 "split_seed": seed},
        "optimiser": {"lr": 3.0e-3, "weight_decay": 0.0},
        "schedule": {"kind": "cosine", "warmup_steps": 50, "min_lr_ratio": 0.02},
        "training": {"epochs": epochs, "batch_size": 16, "grad_clip": 10.0, "ema_decay": 0.99,
                     "seed": seed, "progress": False, "log_every": 0},
    }


SETUPS = {"demo": demo_setup, "dielectric": dielectric_setup}


def rotated(dataset, plans: dict, seed: int):
    """``dataset`` with each structure and its labels rotated by its own random proper rotation."""
    from tsym.runtime.data.dataset import Dataset, Record
    from tsym.runtime.equivariance import random_rotation, rotate_atoms, rotate_cartesian

    generator = torch.Generator().manual_seed(seed)
    records = []
    for record in dataset:
        r = random_rotation(torch.float64, generator).numpy()  # [3, 3], det +1
        labels = {name: rotate_cartesian(value, r, order=plans[name].order)
                  for name, value in record.labels.items()}  # same shapes
        records.append(Record(rotate_atoms(record.atoms, r), labels, record.masks, record.index))
    return Dataset(tuple(records), dataset.labels, dataset.source, dataset.report)


def run_one(config: dict, kind: str, run_dir: Path, seed: int) -> dict:
    """Train ``config`` with head ``kind``; test and rotated-test metrics per head."""
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import checkpoint_labels, load_model, model_plans
    from tsym.runtime.training.loop import train

    config = copy.deepcopy(config)
    config["model"]["head_kwargs"] = {**config["model"]["head_kwargs"], "kind": kind}
    start = time.perf_counter()
    train(config, run_dir)
    wall = time.perf_counter() - start
    model = load_model(run_dir)
    plans = model_plans(model)
    labels = checkpoint_labels(run_dir, model)
    dataset = read_dataset(config["data"]["train"], list(labels.values()), plans,
                           verbose=False)
    test = dataset.subset(json.loads((run_dir / "split.json").read_text())["test"])
    plain = evaluate(model, test, crystal_symmetry=False)
    turned = evaluate(model, rotated(test, plans, seed + 1), crystal_symmetry=False)
    params = sum(p.numel() for name, p in model.named_parameters() if ".heads." in f".{name}")
    return {"wall_s": wall, "head_params": params,
            "heads": {name: {"mae": h.metrics["mae"], "rmse": h.metrics["rmse"],
                             "median_norm_err": float(np.median(np.linalg.norm(
                                 (h.pred - h.true).reshape(len(h.pred), -1), axis=1))),
                             "true_norm_rms": h.metrics["true_norm_rms"],
                             "per_l_rmse": {ir: v["rmse"] for ir, v in h.metrics["per_l"].items()},
                             "rotated_mae": turned.heads[name].metrics["mae"],
                             "rotated_rmse": turned.heads[name].metrics["rmse"]}
                      for name, h in plain.heads.items()}}


def table(results: dict) -> str:
    header = ["data set", "tensor", "head kind", "test MAE", "test RMSE", "median err norm",
              "per-l RMSE", "rotated MAE", "rotated RMSE", "params (all heads)", "train wall (s)"]
    rows = [[dataset, name, kind, f"{h['mae']:.4g}", f"{h['rmse']:.4g}",
             f"{h['median_norm_err']:.4g}",
             ", ".join(f"{ir} {v:.3g}" for ir, v in h["per_l_rmse"].items()),
             f"{h['rotated_mae']:.4g}", f"{h['rotated_rmse']:.4g}", res["head_params"],
             f"{res['wall_s']:.0f}"]
            for dataset, by_kind in results.items() for kind, res in by_kind.items()
            for name, h in res["heads"].items()]
    return markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only", choices=DATASETS, action="append",
                        help="data set(s) to run (repeatable); default all available")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-dir", default=None,
                        help="keep the runs here (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tsym-accuracy-") as tmp:
        work = Path(args.run_dir) if args.run_dir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results: dict = {}
        for name in args.only or DATASETS:
            config = SETUPS[name](args.epochs, args.seed, work)
            if config is None:
                print(f"# {name}: skipped (set TSYM_SHARED_DATA)")
                continue
            for kind in args.kinds:
                run_dir = work / f"{name}-{kind}"
                res = run_one(config, kind, run_dir, args.seed)
                results.setdefault(name, {})[kind] = res
                print(f"# {name} {kind}: " + "  ".join(
                    f"{h} MAE {v['mae']:.4g} rotated {v['rotated_mae']:.4g}"
                    for h, v in res["heads"].items()) + f"  ({res['wall_s']:.0f} s)", flush=True)
        print(f"\n{args.epochs} epochs per run, seed {args.seed}; MAE/RMSE over Cartesian "
              "components, per-l RMSE over irreps coordinates, data units.  RMSE is rotation "
              "invariant, component MAE is not (an equivariant head's rotated MAE moves); "
              "median err norm: median over test items of the error's Frobenius norm\n")
        print(table(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
