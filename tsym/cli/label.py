"""``tsym label IN.extxyz -o OUT.extxyz``: attach PySCF reference tensors to every structure.

Wired into ``tsym/cli/__init__.py`` with ``register(subparsers)``; the work is in :mod:`tsym.runtime.data.label`.
"""
from __future__ import annotations

import sys

from tsym.cli._args import check_output_file
from tsym.compiler.errors import TsymError

__all__ = ["register", "cmd_label"]


def cmd_label(args) -> int:
    """Read ``args.input`` with ASE, label each structure, write ``args.output`` as extxyz."""
    from ase.io import read, write  # the runtime loads when the command runs

    from tsym.runtime.data.label import PROPERTIES, label_structures
    from tsym.runtime.errors import DataError

    check_output_file(args.output)
    props = tuple(p for p in args.properties.split(",") if p)
    unknown = [p for p in props if p not in PROPERTIES]
    if unknown:
        raise TsymError(f"unknown property {unknown[0]!r}\nhint: choose from {', '.join(PROPERTIES)}")
    try:
        structures = read(args.input, index=":")
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataError(args.input, None, f"cannot read structures ({exc})") from None
    if any(atoms.pbc.any() for atoms in structures):
        raise DataError(args.input, None, "periodic structures cannot be labelled",
                        "label isolated molecules (pbc False)")

    def progress(k, atoms):
        if not args.quiet:
            print(f"{args.input}: labelled {k + 1}/{len(structures)} "
                  f"({atoms.get_chemical_formula()})", file=sys.stderr)

    labelled = label_structures(structures, props, basis=args.basis, method=args.method,
                                progress=progress)
    write(args.output, labelled, format="extxyz")
    print(args.output)
    return 0


def register(subparsers) -> None:
    """Add the ``label`` sub-command to the ``tsym`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "label", help="attach PySCF reference tensors (dipole, alpha, beta, NMR) to molecules")
    p.add_argument("input", help="structures readable by ase.io.read (isolated molecules)")
    p.add_argument("-o", "--output", required=True, help="output extxyz file")
    p.add_argument("--properties", default="dipole,polarizability,hyperpolarizability",
                   help="comma-separated subset of dipole, polarizability, hyperpolarizability, "
                        "nmr_shielding (NMR needs PySCF < 2.5)")
    p.add_argument("--basis", default="6-31G*", help="PySCF basis name (default 6-31G*)")
    p.add_argument("--method", default="RHF", help="only RHF")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_label)
