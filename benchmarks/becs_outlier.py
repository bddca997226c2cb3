"""Diagnose the worst-predicted becs_epsilon_e3nn dielectric tensor of finished shared runs.

For the run directories given (``benchmarks/run_shared.py`` runs of ``becs_epsilon_e3nn``, any
head kind; the first one defines the split), print

1. the test crystals with the largest Frobenius error of the predicted dielectric tensor;
2. for the worst one: the training crystals with the same elements but at most one, their
   isotropic eps, and each run's prediction for them;
3. how much of the training set's squared deviation from the mean dielectric tensor (what an MSE
   loss sees at the start) the largest-eps training crystal holds.

``--retrain-without-max DIR`` then trains the first run's config again into ``DIR`` with the same
train / valid / test structures written to files, less the largest-eps training crystal, and
prints the same predictions (a causal check; the split is the same, the batches are not)::

    OMP_NUM_THREADS=1 python -m benchmarks.becs_outlier /tmp/shared_runs/runs/becs_epsilon_e3nn \\
        /tmp/shared_runs/runs/becs_epsilon_e3nn__linear \\
        /tmp/shared_runs/runs/becs_epsilon_e3nn__invariant --frame 240 \\
        [--retrain-without-max /tmp/becs_drop]
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import yaml


def _iso(t: np.ndarray) -> np.ndarray:
    return np.trace(t, axis1=-2, axis2=-1) / 3.0  # [...]


def _load(run_dir: Path):
    from ase.io import read

    from tsym.runtime.inference.predict import load_model

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    frames = read(cfg["data"]["train"], ":")
    return cfg, split, frames, load_model(run_dir)


def _eps(frames) -> np.ndarray:
    return np.stack([np.asarray(a.info["dielectric"], float).reshape(3, 3)
                     for a in frames])  # [n, 3, 3]


def _iso_pred(model, atoms) -> list[float]:
    pred = np.asarray(model.predict(list(atoms))["dielectric"], dtype=np.float64)  # [m, 3, 3]
    return [float(x) for x in _iso(pred)]


def diagnose(run_dirs: list[Path], top: int = 5, frame: int | None = None) -> dict:
    """Print the diagnosis; the frame indices of the studied test and largest-eps train crystal.

    ``frame``: the test crystal to study (default: the worst of the first run).
    """
    cfg, split, frames, model = _load(run_dirs[0])
    models = {d.name: _load(d)[3] for d in run_dirs}
    eps = _eps(frames)  # [n, 3, 3]
    test, train = split["test"], split["train"]
    pred = np.asarray(model.predict([frames[i] for i in test])["dielectric"], float)  # [T, 3, 3]
    err = np.linalg.norm((pred - eps[test]).reshape(len(test), -1), axis=1)  # [T]
    print(f"{run_dirs[0].name}: largest test errors (Frobenius)")
    for k in np.argsort(-err)[:top]:
        a = frames[test[k]]
        print(f"  frame {test[k]:5d} {a.get_chemical_formula():14s} iso true "
              f"{_iso(eps[test[k]]):7.2f} pred {_iso(pred[k]):7.2f}  |err| {err[k]:7.1f}")
    worst = test[int(np.argmax(err))] if frame is None else frame
    elements = set(frames[worst].get_chemical_symbols())
    near = [i for i in train if len(elements - set(frames[i].get_chemical_symbols())) <= 1
            and len(set(frames[i].get_chemical_symbols()) - elements) <= 1]
    biggest = train[int(np.argmax(_iso(eps[train])))]
    dev = (eps[train] - eps[train].mean(axis=0)).reshape(len(train), -1)  # [n_train, 9]
    sq = (dev ** 2).sum(axis=1)  # [n_train]
    share = float(sq[train.index(biggest)] / sq.sum())
    print(f"test frame {worst} ({frames[worst].get_chemical_formula()}); training crystals "
          f"with the same elements but at most one ({len(near)}):")
    show = [worst] + sorted(set(near) | {biggest}, key=lambda i: -_iso(eps[i]))[:8]
    preds = {name: _iso_pred(m, [frames[i] for i in show]) for name, m in models.items()}
    print("  frame  formula          iso true  " + "  ".join(f"{n[-24:]:>24s}" for n in preds))
    for j, i in enumerate(show):
        tag = "test " if i == worst else "train"
        print(f"  {i:5d} {tag} {frames[i].get_chemical_formula():12s} {_iso(eps[i]):8.2f}  "
              + "  ".join(f"{p[j]:24.2f}" for p in preds.values()))
    print(f"largest-eps training crystal: frame {biggest} "
          f"({frames[biggest].get_chemical_formula()}), iso {_iso(eps[biggest]):.1f}, "
          f"diagonal {np.diag(eps[biggest]).round(1).tolist()}; "
          f"its share of the training set's squared deviation from the mean tensor: {share:.2f} "
          f"(next largest {np.sort(sq)[-2] / sq.sum():.3f})")
    return {"worst": worst, "biggest": biggest, "share": share, "cfg": cfg, "split": split,
            "frames": frames}


def retrain_without(found: dict, out_dir: Path) -> None:
    """Train the same config without the largest-eps training crystal; print the check."""
    from ase.io import write

    from tsym.runtime.inference.predict import load_model
    from tsym.runtime.training.loop import train

    out_dir.mkdir(parents=True, exist_ok=True)
    frames, split = found["frames"], found["split"]
    parts = {"train": [i for i in split["train"] if i != found["biggest"]],
             "valid": split["valid"], "test": split["test"]}
    cfg = copy.deepcopy(found["cfg"])
    for key, idx in parts.items():
        path = out_dir / f"{key}.extxyz"
        write(path, [frames[i] for i in idx], format="extxyz")
        cfg["data"][key] = str(path)
    cfg["data"].update(valid_fraction=0.0, test_fraction=0.0)
    run_dir = out_dir / "run"
    train(cfg, run_dir)
    model = load_model(run_dir)
    eps = _eps(frames)
    test = parts["test"]
    pred = np.asarray(model.predict([frames[i] for i in test])["dielectric"], float)  # [T, 3, 3]
    err = np.linalg.norm((pred - eps[test]).reshape(len(test), -1), axis=1)  # [T]
    k = test.index(found["worst"])
    print(f"without frame {found['biggest']}: frame {found['worst']} iso pred {_iso(pred[k]):.2f}"
          f" (true {_iso(eps[found['worst']]):.2f}); dielectric test Frobenius RMSE "
          f"{np.sqrt((err ** 2).mean()):.3g}, MAE {np.abs(pred - eps[test]).mean():.3g}, median "
          f"|err| {np.median(err):.3g}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="becs_epsilon_e3nn run directories")
    p.add_argument("--retrain-without-max", type=Path, default=None, metavar="DIR")
    p.add_argument("--frame", type=int, default=None,
                   help="test frame to study (default: the worst of the first run)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    found = diagnose(args.runs, frame=args.frame)
    if args.retrain_without_max is not None:
        retrain_without(found, args.retrain_without_max)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
