"""``tsym eval RUN_OR_CHECKPOINT DATA.extxyz [--labels KEY=SPEC ...] [-o OUT_DIR]``: metrics, plots.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work is in
:mod:`tsym.runtime.inference.evaluate` and :mod:`tsym.runtime.inference.plots`.

Which labels: by default each head's label as the run read it (key, format, scale, unit from the
checkpoint's training config; the spec name for a bare model checkpoint), for the heads whose key
the first structure of DATA holds.  ``--labels KEY=SPEC[:FORMAT]`` names them explicitly (then
only those heads are evaluated): ``KEY`` in ``atoms.info`` / ``atoms.arrays``, ``SPEC`` the head
(spec) name, ``FORMAT`` ``flat`` (default) or ``voigt``.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from tsym.cli._args import add_model_argument, check_output_folder, positive_int
from tsym.cli.committee import (add_committee_arguments, check_committee_arguments,
                                committee_eval, committee_setup)
from tsym.cli.fit_kernel import kernel_eval
from tsym.compiler.errors import TsymError

__all__ = ["register", "cmd_eval", "parse_label_args"]


def parse_label_args(items, defaults: dict) -> dict:
    """``KEY=SPEC[:FORMAT]`` strings -> ``{spec: LabelSpec}`` (based on ``defaults[spec]``)."""
    out = {}
    for item in items:
        key, sep, rest = item.partition("=")
        name, _, fmt = rest.partition(":")
        if not sep or not key or not name:
            raise TsymError(f"--labels {item!r}: expected KEY=SPEC or KEY=SPEC:FORMAT\n"
                            f"hint: e.g. --labels eps=dielectric C=elastic:voigt")
        if name not in defaults:
            raise TsymError(f"--labels {item!r}: the model has no head '{name}' (heads: "
                            f"{', '.join(sorted(defaults))})\nhint: write KEY=SPEC, the data "
                            "key on the left, the head's spec name on the right")
        changes = {"key": key, **({"format": fmt} if fmt else {})}
        out[name] = dataclasses.replace(defaults[name], **changes)
    return out


def _present(data: str, specs: dict) -> dict:
    """The labels whose key the first structure of ``data`` holds."""
    import ase.io

    from tsym.runtime.data.extxyz import unreadable_reason
    from tsym.runtime.errors import DataError

    plainly_not = unreadable_reason(data)
    if plainly_not:
        raise DataError(data, None, *plainly_not)
    try:
        first = ase.io.read(data, index=0, format="extxyz")
    except FileNotFoundError:
        raise DataError(data, None, "no such file") from None
    except Exception as err:  # ASE raises many kinds for unreadable files
        raise DataError(data, None, f"cannot read as extended XYZ ({err})") from None
    results = getattr(first.calc, "results", None) or {}
    return {name: s for name, s in specs.items()
            if s.key in results or s.key in (first.arrays if s.level == "atom" else first.info)}


def cmd_eval(args) -> int:
    """Evaluate, print the summary (or JSON), write ``metrics.json`` and the parity plots."""
    from tsym.runtime.model.checkpoint import resolve_checkpoint  # the runtime loads when it runs
    from tsym.runtime.inference.coverage import describe_unseen, unseen_elements
    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.plots import parity_plots
    from tsym.runtime.inference.predict import checkpoint_labels, load_model

    check_committee_arguments(args)
    if args.output:
        check_output_folder(args.output)
    ckpt = resolve_checkpoint(args.model)
    model = load_model(ckpt)
    defaults = checkpoint_labels(ckpt, model)
    if args.labels:
        labels = parse_label_args(args.labels, defaults)
    else:
        labels = _present(args.data, defaults)
        for name, spec in defaults.items():
            if name not in labels and labels:
                print(f"tsym: note: head '{name}' is not evaluated: the first structure of "
                      f"{args.data} holds no '{spec.key}' label (name it with --labels "
                      f"KEY={name})", file=sys.stderr)
        if not labels:
            keys = ", ".join(f"{s.key} ({n})" for n, s in defaults.items())
            raise TsymError(f"{args.data}: the first structure holds none of the label keys "
                            f"the model's heads read ({keys})\nhint: name them with --labels "
                            "KEY=SPEC")
    committee = committee_setup(args, labels) if args.committee else None  # refusals first
    seen, unseen = unseen_elements(ckpt, args.data)
    if unseen:
        print(f"tsym: warning: {describe_unseen(args.data, seen, unseen)}", file=sys.stderr)
    report = evaluate(model, args.data, list(labels.values()), batch_size=args.batch_size,
                      symprec=args.symprec, on_error=args.on_error)
    model_path = Path(args.model)
    out = Path(args.output) if args.output else (
        (model_path if model_path.is_dir() else ckpt.parent) / f"eval_{Path(args.data).stem}")
    out.mkdir(parents=True, exist_ok=True)
    metrics = report.write_json(out / "metrics.json")
    if args.json:
        print(metrics.read_text(), end="")
    else:
        print(report.summary())
        print(f"metrics: {metrics}")
    if not args.no_plots:
        for path in parity_plots(report, out):
            print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
    if args.kernel is not None:  # the kernel readouts of `tsym fit-kernel`, with calibration
        kernel_eval(args, model, ckpt, labels, out)
    if committee:  # RUN and the --committee runs: mean, spread, calibration
        committee_eval(args, committee, labels, out)
    return 0


def register(subparsers) -> None:
    """Add the ``eval`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "eval", help="metrics and parity plots of a trained model on labelled structures")
    add_model_argument(p)
    p.add_argument("data", help="labelled structures (extended XYZ)")
    p.add_argument("--labels", nargs="+", default=None, metavar="KEY=SPEC[:FORMAT]",
                   help="data key -> head (spec) name, format flat (default) or voigt; "
                        "default: the labels of the training config found in DATA")
    p.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                   help="where metrics.json and the PNGs go (default: eval_<DATA stem> beside "
                        "the checkpoint, or in the run directory)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--symprec", type=float, default=1e-2,
                   help="spglib tolerance (Angstrom) for the point groups of crystals")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="a bad record stops the evaluation (fail) or is skipped and counted")
    p.add_argument("--no-plots", action="store_true", help="write no PNGs")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--kernel", nargs="?", const="", default=None, metavar="FILE",
                   help="also evaluate the kernel readouts (default file RUN/kernel.pt): "
                        "calibration of their std, worst structures, extrapolation warnings")
    add_committee_arguments(p)
    p.set_defaults(func=cmd_eval)
