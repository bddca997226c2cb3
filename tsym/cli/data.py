"""``tsym data``: convert public tensor data sets to extended XYZ, and check a labelled file.

::

    tsym data convert SOURCE_KIND INPUT -o OUT.extxyz [--limit N] [--report R.json] [--set k=v]
    tsym data check DATA.extxyz --spec SPEC.tsym [--name NAME] [--key KEY] [--format voigt] [--max-z Z]

``convert`` prints the conversion report (counts, dropped entries by reason, symmetry
deviations, point-group invariance); ``--set`` passes a converter option (a Python literal, e.g.
``--set cell=15.6`` or ``--set min_sign_margin=0``).  ``check`` reads the file as training would
(every record validated against the spec's symmetry) and prints what it kept and skipped; its exit
status is 1 when any record was skipped, 0 otherwise (``--strict`` stops at the first bad record
with its ``FILE:record N:`` message instead).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from tsym.cli._args import check_output_file, positive_int
from tsym.compiler import load_plans
from tsym.compiler.errors import TsymError

__all__ = ["register", "cmd_convert", "cmd_check", "CONVERTER_NAMES"]

#: ``sorted(tsym.runtime.data.convert.CONVERTERS)``, written out so that ``tsym --help`` loads
#: no runtime (tests/test_cli_fast.py checks that the two agree).
CONVERTER_NAMES = ("abo3_piezo", "becs_epsilon_e3nn", "elastic_matten", "nmr_shiftml_s546",
                   "nmr_si_matten", "piezo_mp_matminer", "qm7x_cookbook", "qm9_alpha_slice",
                   "water_apt", "water_gamma_tensoap", "water_sagpr")


def _options(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise TsymError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def cmd_convert(args) -> int:
    from tsym.runtime.data.convert import convert, write_extxyz  # the runtime loads here

    check_output_file(args.output)
    if args.report:
        check_output_file(args.report, "report")
    options = _options(args.set)
    if args.limit is not None:
        options["limit"] = args.limit
    frames, report = convert(args.kind, args.input, **options)
    write_extxyz(args.output, frames)
    print(report.summary())
    print(f"wrote {len(frames)} structures to {args.output}")
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    return 0


def cmd_check(args) -> int:
    from tsym.runtime.data import LabelSpec, read_dataset  # the runtime loads here

    plans = load_plans(args.spec)
    if args.name is not None:
        plans = [p for p in plans if p.name == args.name]
    if len(plans) != 1:
        names = [p.name for p in load_plans(args.spec)]
        raise TsymError(f"{args.spec}: choose one tensor with --name (the file has {names})")
    plan = plans[0]
    key = args.key or ("mu" if plan.name == "dipole" else plan.name)
    label = LabelSpec(name=plan.name, key=key, format=args.format, unit=plan.units,
                      scale=args.scale, level=plan.level)
    dataset = read_dataset(args.data, [label], {plan.name: plan},
                           on_error="fail" if args.strict else "skip",
                           symmetry_tol=args.tol, max_z=args.max_z, verbose=False)
    print(dataset.report.summary())
    return 1 if dataset.report.skipped else 0


def register(subparsers) -> None:
    """Add the ``data`` command (``convert``, ``check``) to an argparse sub-parser set."""
    p = subparsers.add_parser("data", help="convert public tensor data to extxyz; check a file")
    sub = p.add_subparsers(dest="data_command", required=True)

    c = sub.add_parser("convert", help="convert a public data set to extended XYZ")
    c.add_argument("kind", choices=CONVERTER_NAMES, metavar="SOURCE_KIND",
                   help=f"one of: {', '.join(CONVERTER_NAMES)}")
    c.add_argument("input")
    c.add_argument("-o", "--output", required=True, help="output .extxyz file")
    c.add_argument("--limit", type=positive_int, default=None,
                   help="convert the first N entries only")
    c.add_argument("--report", default=None, help="also write the report as JSON here")
    c.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a converter option, e.g. min_sign_margin=0 or cell=15.6")
    c.set_defaults(func=cmd_convert)

    k = sub.add_parser("check", help="validate the labels of an extxyz file against a spec")
    k.add_argument("data")
    k.add_argument("--spec", required=True, help="a library name (e.g. dielectric), a .tsym file or spec text")
    k.add_argument("--name", default=None, help="the tensor of the spec file (if several)")
    k.add_argument("--key", default=None, help="info/arrays key (default: the spec name; "
                   "'mu' for dipole)")
    k.add_argument("--format", choices=("flat", "voigt"), default="flat")
    k.add_argument("--scale", type=float, default=1.0, help="multiply the values by this")
    k.add_argument("--tol", type=float, default=1e-3, help="relative symmetry tolerance")
    k.add_argument("--strict", action="store_true", help="stop at the first bad record")
    k.add_argument("--max-z", type=int, default=118, metavar="Z",
                   help="the largest atomic number the model covers: records with other elements "
                        "are reported (default 118, what XPaiNN's embeddings cover; e.g. 53 for "
                        "a model trained with max_z: 53)")
    k.set_defaults(func=cmd_check)
