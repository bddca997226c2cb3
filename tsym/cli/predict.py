"""``tsym predict RUN_OR_CHECKPOINT STRUCTURES -o OUT.extxyz``: write the predicted tensors.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work is in
:mod:`tsym.runtime.inference.predict`.  Structure-level tensors go to ``atoms.info``, atom-level tensors to
``atoms.arrays``, flattened row-major, under the spec name (plus ``--suffix``).
"""
from __future__ import annotations

import ase.io

from tsym.cli._args import add_model_argument
from tsym.runtime.errors import DataError
from tsym.runtime.inference.predict import load_model, predict_structures

__all__ = ["register", "cmd_predict"]


def cmd_predict(args) -> int:
    """Read the structures with ASE, predict, write extended XYZ, print the output path."""
    model = load_model(args.model)
    try:
        structures = ase.io.read(args.structures, index=":")
    except FileNotFoundError:
        raise DataError(args.structures, None, "no such file") from None
    except Exception as err:  # ASE raises many kinds for unreadable files
        raise DataError(args.structures, None, f"cannot read structures ({err})") from None
    out = predict_structures(model, structures, batch_size=args.batch_size, suffix=args.suffix)
    ase.io.write(args.output, out, format="extxyz")
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
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_predict)
