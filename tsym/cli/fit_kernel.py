"""``tsym fit-kernel RUN [--data TRAIN.extxyz] [-o RUN/kernel.pt]``: a kernel (GP) readout per head.

Fits :class:`tsym.runtime.kernel.KernelReadout` on the frozen node features of the run's
checkpoint for its training structures (the config's ``data.train``, or ``--data``), with each
head's label as the run read it; hyperparameters by exact leave-one-out on the training data
only.  ``tsym eval RUN DATA --kernel`` and ``tsym predict RUN STRUCTURES -o OUT --kernel`` use
the file.  Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from tsym.cli._args import add_model_argument, positive_int
from tsym.compiler.errors import TsymError

__all__ = ["register", "cmd_fit_kernel", "kernel_path"]


def kernel_path(model: str, given: str | None) -> Path:
    """``given``, or ``kernel.pt`` in the run directory (beside the checkpoint file)."""
    if given:
        return Path(given)
    path = Path(model)
    return (path if path.is_dir() else path.parent) / "kernel.pt"


def _training_data(ckpt) -> str:
    from tsym.runtime.model.checkpoint import read_model

    train = ((read_model(ckpt).config or {}).get("data") or {}).get("train")
    if not train:
        raise TsymError(f"{ckpt}: the checkpoint records no training data file\nhint: pass "
                        "--data TRAIN.extxyz")
    return str(train)


def cmd_fit_kernel(args) -> int:
    """Fit, write the kernel file, print one line per head (hyperparameters, LOO error)."""
    from tsym.runtime.model.checkpoint import resolve_checkpoint
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.inference.predict import checkpoint_labels, load_model, model_plans
    from tsym.runtime.kernel import fit_kernels, save_kernels

    ckpt = resolve_checkpoint(args.model)
    model = load_model(ckpt)
    data = args.data or _training_data(ckpt)
    labels = checkpoint_labels(ckpt, model)
    if args.heads:
        labels = {n: s for n, s in labels.items() if n in args.heads}
    dataset = read_dataset(data, list(labels.values()), model_plans(model),
                           max_z=getattr(model, "max_z", None))
    readouts = fit_kernels(model, dataset, max_exact=args.max_exact, n_inducing=args.inducing)
    out = kernel_path(args.model, args.output)
    save_kernels(readouts, out, ckpt)
    for name, kr in readouts.items():
        parts = ", ".join(f"{k}: sigma {h['sigma']:g} lam {h['lam']:g} LOO RMSE "
                          f"{h['loo_rmse']:.4g}" for k, h in kr.hyper.items())
        print(f"{name}: {len(dataset)} structures; {parts}")
    print(out)
    return 0


def register(subparsers) -> None:
    """Add the ``fit-kernel`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser("fit-kernel", help="fit a kernel (GP) readout with uncertainty on "
                              "a trained model's frozen features")
    add_model_argument(p)
    p.add_argument("--data", default=None, help="training structures (default: the run's "
                                                "data.train)")
    p.add_argument("--heads", nargs="+", default=None, metavar="NAME", help="only these heads")
    p.add_argument("-o", "--output", default=None, help="kernel file (default RUN/kernel.pt)")
    p.add_argument("--max-exact", type=positive_int, default=3000,
                   help="exact GP up to this many training outputs, projected process beyond")
    p.add_argument("--inducing", type=positive_int, default=1000,
                   help="inducing environments of the projected process")
    p.set_defaults(func=cmd_fit_kernel)


def kernel_eval(args, model, ckpt, labels: dict, out: Path) -> None:
    """``tsym eval ... --kernel [FILE]``: the kernel readouts' metrics, calibration (coverage of
    the 68 % / 95 % intervals per irreps coordinate, Spearman rank correlation of error and std,
    a PNG), the worst outputs with their std, and extrapolation warnings; ``kernel_metrics.json``."""
    from tsym.runtime.data.dataset import read_dataset
    from tsym.runtime.inference.predict import model_plans
    from tsym.runtime.kernel import evaluate_kernels, load_kernels

    readouts = load_kernels(kernel_path(args.model, args.kernel or None), ckpt)
    specs = [s for n, s in labels.items() if n in readouts]
    dataset = read_dataset(args.data, specs, model_plans(model), on_error=args.on_error)
    result = evaluate_kernels(model, readouts, dataset, None if args.no_plots else out)
    stream = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the JSON

    def say(line: str) -> None:
        print(line, file=stream)

    for name, r in result.items():
        c = r["calibration"]
        say(f"kernel {name}: Frobenius RMSE {r['rmse_frobenius']:.4g}, MAE {r['mae']:.4g}; "
            f"coverage 68 % {c['coverage_68']:.3f}, 95 % {c['coverage_95']:.3f}; "
            f"Spearman(error, std) {c['spearman']:.3f}")
        say("  worst: " + "; ".join(
            f"record {w.get('record', w['index'])} error {w['error']:.4g} std {w['std']:.4g} "
            f"(std rank {w['std_rank']})" for w in c["worst"]))
        for message in r["extrapolation"]["messages"]:
            say(f"  warning: {message}")
        if r["plot"]:
            say(f"plot: {r['plot']}")
    (out / "kernel_metrics.json").write_text(json.dumps(result, indent=1, default=str))


def kernel_predict(args, model) -> int:
    """``tsym predict ... --kernel [FILE]``: kernel means under ``NAME{suffix}`` and Frobenius
    stds under ``NAME{suffix}_std``; extrapolation warnings on stderr.  Reads the whole file."""
    import ase.io

    from tsym.runtime.model.checkpoint import resolve_checkpoint
    from tsym.runtime.kernel import load_kernels, predict_kernels

    ckpt = resolve_checkpoint(args.model)
    readouts = load_kernels(kernel_path(args.model, args.kernel or None), ckpt)
    structures = ase.io.read(args.structures, ":")
    preds, flags = predict_kernels(model, readouts, structures)
    starts = list(itertools.accumulate([len(a) for a in structures], initial=0))
    for k, atoms in enumerate(structures):
        for name, kr in readouts.items():
            mean, std = preds[name]["cartesian"].numpy(), preds[name]["std"].numpy()
            key = f"{name}{args.suffix}"
            if kr.plan.level == "atom":
                rows = slice(starts[k], starts[k + 1])
                atoms.arrays[key] = mean[rows].reshape(len(atoms), -1).copy()
                atoms.arrays[f"{key}_std"] = std[rows].copy()
            else:
                atoms.info[key], atoms.info[f"{key}_std"] = mean[k].reshape(-1), float(std[k])
    ase.io.write(args.output, structures, format="extxyz")
    for name, f in flags.items():
        for message in f["messages"]:
            print(f"tsym: warning: {name}: {message}", file=sys.stderr)
    print(args.output)
    return 0
