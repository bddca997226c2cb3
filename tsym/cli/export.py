"""``tsym export RUN_OR_CHECKPOINT -o model.pt``: a TorchScript file that needs only torch.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work (and the inputs the exported
module takes) is in :mod:`tsym.runtime.inference.export`.
"""
from __future__ import annotations

from tsym.cli._args import add_model_argument, check_output_file

__all__ = ["register", "cmd_export"]


def cmd_export(args) -> int:
    """Export, check against the model, print the path and what the module expects."""
    from tsym.runtime.inference.export import INPUTS, export_model  # loads the runtime
    from tsym.runtime.inference.predict import load_model, model_plans

    check_output_file(args.output)
    model = load_model(args.model)
    path = export_model(model, args.output, check=not args.no_check)
    heads = ", ".join(f"{n} ({p.level}, order {p.order})" for n, p in model_plans(model).items())
    print(path)
    print(f"inputs: {', '.join(INPUTS)}; dtype {str(model.dtype).removeprefix('torch.')}; "
          f"cutoff {model.cutoff:g}; outputs: {heads}")
    return 0


def register(subparsers) -> None:
    """Add the ``export`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "export", help="save a model as TorchScript that loads with torch.jit.load alone")
    add_model_argument(p)
    p.add_argument("-o", "--output", required=True, help="output file (e.g. model.pt)")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing the exported module with the model")
    p.set_defaults(func=cmd_export)
