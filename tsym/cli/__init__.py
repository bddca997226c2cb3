"""The ``tsym`` command line: ``inspect``, ``compile``, ``table``.

Every user error is a :class:`tsym.TsymError`, printed without a traceback (exit status 2).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from tsym.cli import data, demo, eval, export, fit_kernel, label, predict, spectrum, train
from tsym.cli._args import check_output_folder
from tsym.compiler import SpecWarning, TsymError, library_names, load_plans, write_modules
from tsym.compiler.library import library_path
from tsym.compiler.errors import TsymWarning

__all__ = ["main"]

#: The ``tsym/cli/<name>.py`` modules, each with ``register(subparsers)``.
COMMAND_MODULES = (data, demo, eval, export, fit_kernel, label, predict, spectrum, train)


def _plans(path: str):
    """Compile ``path`` (a library name, a file or spec text); a spec's warnings (e.g. a redundant relation) go to stderr, located."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)  # printed once below, without Python's frame
        plans = load_plans(path)
    for plan in plans:
        for message in plan.warnings:
            print(f"tsym: warning: {message}", file=sys.stderr)
    return plans


def cmd_inspect(args) -> int:
    plans = _plans(args.spec)
    if args.json:
        out = []
        for plan in plans:
            item = plan.to_dict()
            item["change_of_basis"] = plan.basis_array.tolist()
            out.append(item)
        json.dump(out, sys.stdout, indent=1 if args.indent else None)
        sys.stdout.write("\n")
        return 0
    for k, plan in enumerate(plans):
        if k:
            print()
        d = plan.to_dict()
        width = max(len(key) for key in d)
        for key in ("name", "indices", "order", "parity", "level", "pool", "units", "irreps",
                    "num_components", "group_order", "basis_origin"):
            value = d[key] if d[key] is not None else "-"
            print(f"{key.replace('_', ' '):<{width}}  {value}")
        for relation in d["relations"]:
            print(f"{'relation':<{width}}  {relation}")
        for key in ("sum_rule", "positive", "factor_irreps"):
            if d[key] is not None:
                print(f"{key.replace('_', ' '):<{width}}  {d[key]}")
    return 0


def cmd_compile(args) -> int:
    check_output_folder(args.output)
    plans = _plans(args.spec)
    for path in write_modules(plans, args.output):
        print(path)
    return 0


def table_rows(paths: list[Path]) -> list[tuple[str, ...]]:
    rows = []
    for path in paths:
        for plan in load_plans(path):
            rows.append((plan.name, plan.indices, plan.parity, plan.level, plan.pool,
                         str(plan.num_components), plan.irreps))
    return rows


def cmd_table(args) -> int:
    if args.directory is None:  # the spec library
        paths = [library_path(name) for name in library_names()]
    else:
        root = Path(args.directory)
        paths = sorted(root.glob("*.tsym")) if root.is_dir() else [root]
    if not paths:
        raise TsymError(f"{args.directory}: no .tsym files found")
    header = ("name", "indices", "parity", "level", "pool", "components", "irreps")
    rows = [header] + table_rows(paths)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsym", description="Symbolic tensor-symmetry compiler.")
    sub = parser.add_subparsers(dest="command", required=True)

    spec_help = "a library name (e.g. elastic), a .tsym file or spec text"
    p = sub.add_parser("inspect", help="print the decomposition of every tensor of a spec file")
    p.add_argument("spec", help=spec_help)
    p.add_argument("--json", action="store_true", help="JSON, with the change of basis")
    p.add_argument("--indent", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("compile", help="emit one standalone PyTorch module per tensor")
    p.add_argument("spec", help=spec_help)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("table", help="compile every spec of a directory and print a table")
    p.add_argument("directory", nargs="?", default=None,
                   help="a folder of .tsym files or one file (default: the spec library)")
    p.set_defaults(func=cmd_table)

    # commands of the runtime (training, data, labelling, ...) live beside this file
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None, *,
                    _default=warnings.formatwarning):
    if issubclass(category, TsymWarning):  # tsym's own warnings: one line, no source location
        return f"tsym: warning: {message}\n"
    return _default(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TsymError as err:
        print(str(err), file=sys.stderr)
        return getattr(err, "exit_code", 2)  # 2; 128 + signal for a training stopped by one
    except KeyboardInterrupt:
        print("tsym: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # the machine, not tsym: a full disk, a read-only or missing folder
        if err.errno is None:
            return _internal(err)
        where = f"{err.filename}: " if err.filename else "tsym: "
        print(f"{where}{err.strerror or err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - no traceback for users; say it is our bug
        return _internal(err)


def _internal(err: BaseException) -> int:
    print(f"tsym: internal error ({type(err).__name__}: {err}); please report it with the "
          "command line that caused it", file=sys.stderr)
    return 70


if __name__ == "__main__":
    sys.exit(main())
