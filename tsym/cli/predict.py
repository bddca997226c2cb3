"""``tsym predict RUN_OR_CHECKPOINT STRUCTURES -o OUT.extxyz``: write the predicted tensors.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work is in
:mod:`tsym.runtime.inference.predict`.  Structure-level tensors go to ``atoms.info``,
atom-level tensors to ``atoms.arrays``, flattened row-major, under the spec name (plus
``--suffix``).
"""
from __future__ import annotations

from tsym.cli._args import add_model_argument, check_output_file, positive_int
from tsym.cli.committee import (add_committee_arguments, check_committee_arguments,
                                committee_predict)
from tsym.cli.fit_kernel import kernel_predict

__all__ = ["register", "cmd_predict"]


def cmd_predict(args) -> int:
    """Read the structures lazily, predict batch by batch, append each batch to the extxyz
    output, print the output path.  Memory stays flat in the number of structures."""
    from tsym.runtime.inference.predict import (check_suffix, load_model,  # loads the runtime
                                                predict_file)

    check_output_file(args.output)
    check_suffix(args.suffix)
    check_committee_arguments(args)
    if args.committee:  # RUN and the --committee runs: their mean, and NAME_std
        return committee_predict(args)
    model = load_model(args.model)
    if args.kernel is not None:  # the kernel readouts of `tsym fit-kernel`, with their std
        return kernel_predict(args, model)
    predict_file(model, args.structures, args.output, batch_size=args.batch_size,
                 suffix=args.suffix, progress=not args.no_progress,
                 overwrite_labels=args.overwrite_labels, derivatives=args.derivatives)
    print(args.output)
    return 0


def register(subparsers) -> None:
    """Add the ``predict`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser("predict", help="predict the tensors of structures into extxyz")
    add_model_argument(p)
    p.add_argument("structures", help="structures readable by ase.io.read")
    p.add_argument("-o", "--output", required=True, help="output extended XYZ file")
    p.add_argument("--suffix", default="",
                   help="appended to each spec name to form the key (e.g. _pred, to keep labels "
                        "of the same name)")
    p.add_argument("--overwrite-labels", action="store_true",
                   help="let predictions replace input keys of the same name (refused otherwise)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--derivatives", action="store_true",
                   help="also write d(head)/d(positions) of each structure-level head per atom "
                        "(NAME_derivatives: APTs of a dipole, Raman tensors of a polarizability)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it shows only when stderr is a terminal)")
    p.add_argument("--kernel", nargs="?", const="", default=None, metavar="FILE",
                   help="predict with the kernel readouts (default file RUN/kernel.pt): also "
                        "writes NAME_std and warns about extrapolation")
    add_committee_arguments(p)
    p.set_defaults(func=cmd_predict)
