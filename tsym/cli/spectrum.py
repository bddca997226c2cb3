"""``tsym spectrum harmonic MODEL STRUCTURE (--hessian FILE | --vibrations NAME) -o OUT.csv``.

The harmonic IR and Raman spectrum of one structure: the normal modes of a Hessian (eV/Angstrom^2,
a ``.npy`` or text file of shape ``[3N, 3N]``, or the cache of an ASE ``Vibrations`` run with any
calculator: ``Vibrations(atoms, name=NAME).run()``), rigid translations and rotations projected
out, and the model's derivative tensors (APTs from ``--dipole``, Raman tensors from
``--polarizability``, by autograd; or an atom-level APT head, ``--apt``).  Writes the broadened
curves (``OUT.csv``), the per-mode table (``OUT_modes.csv``: wavenumber in cm^-1, IR intensity
in km/mol, Raman activity in Angstrom^4/amu, depolarisation ratio) and, with ``--png``, a plot;
prints the mode table.  The work is in :mod:`tsym.runtime.spectra`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tsym.cli._args import add_model_argument, check_output_file
from tsym.compiler import TsymError

__all__ = ["register", "cmd_harmonic"]


def _read_hessian(path: str):
    p = Path(path)
    if not p.is_file():
        raise TsymError(f"{path}: no such Hessian file")
    try:
        return np.load(p) if p.suffix == ".npy" else np.loadtxt(p)
    except (ValueError, OSError) as err:
        raise TsymError(f"{path}: cannot read a Hessian from it ({err}); give a .npy file or "
                        "a text matrix in eV/Angstrom^2") from None


def _read_structure(path: str, index: int):
    import ase.io

    if not Path(path).is_file():
        raise TsymError(f"{path}: no such structure file")
    try:
        return ase.io.read(path, index=index)
    except Exception as err:  # noqa: BLE001 - ASE's readers raise many kinds; name the file
        raise TsymError(f"{path}: cannot read structure {index} ({type(err).__name__}: "
                        f"{err})") from None


def _grid(text: str | None):
    if text is None:
        return None
    try:
        start, stop, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise TsymError(f"--grid {text!r}: expected START:STOP:STEP in cm^-1") from None
    if not (step > 0 and stop > start):
        raise TsymError(f"--grid {text!r}: need STOP > START and STEP > 0")
    return np.arange(start, stop + 0.5 * step, step)


def cmd_harmonic(args) -> int:
    """Compute the spectrum, write the CSV files (and PNG), print the mode table."""
    from ase.vibrations import Vibrations

    from tsym.runtime.inference.predict import load_model  # loads the runtime
    from tsym.runtime.spectra import model_spectrum, plot_spectrum, write_csv

    check_output_file(args.output)
    if args.png:
        check_output_file(args.png, "plot")
    grid = _grid(args.grid)
    atoms = _read_structure(args.structure, args.index)
    if args.hessian is not None:
        hessian = _read_hessian(args.hessian)
    else:
        if not Path(args.vibrations).is_dir():
            raise TsymError(f"{args.vibrations}: no such ASE Vibrations cache (run "
                            f"Vibrations(atoms, name={args.vibrations!r}).run() first)")
        hessian = Vibrations(atoms, name=args.vibrations).get_vibrations()
    model = load_model(args.model)
    spec = model_spectrum(model, atoms, hessian, dipole=args.dipole,
                          polarizability=args.polarizability, apt=args.apt,
                          dipole_unit=args.dipole_unit,
                          polarizability_unit=args.polarizability_unit)
    imaginary = int((spec.wavenumbers < 0).sum())
    if imaginary:
        print(f"tsym: warning: {imaginary} imaginary mode(s), listed with negative wavenumbers: "
              "the structure is not at a minimum of the Hessian's potential (optimise it "
              "first)", file=sys.stderr)
    curve, modes = write_csv(spec, args.output, grid, args.width, args.shape)
    ir, raman, rho = spec.ir_intensities, spec.raman_activities, spec.depolarization_ratios
    print(f"{'mode':>4} {'cm^-1':>10}" + (f" {'IR km/mol':>12}" if ir is not None else "")
          + (f" {'Raman A^4/amu':>14} {'depol':>6}" if raman is not None else ""))
    for k, nu in enumerate(spec.wavenumbers):
        line = f"{k:>4} {nu:>10.2f}"
        line += f" {ir[k]:>12.4f}" if ir is not None else ""
        line += f" {raman[k]:>14.4f} {rho[k]:>6.3f}" if raman is not None else ""
        print(line)
    print(curve)
    print(modes)
    if args.png:
        print(plot_spectrum(spec, args.png, grid, args.width, args.shape))
    return 0


def register(subparsers) -> None:
    """Add ``spectrum`` (with its sub-command ``harmonic``) to the ``tsym`` parser."""
    p = subparsers.add_parser("spectrum", help="IR and Raman spectra from a model's tensors")
    sub = p.add_subparsers(dest="spectrum_command", required=True)
    h = sub.add_parser("harmonic", help="harmonic IR/Raman spectrum of one structure",
                       description=__doc__.split("\n\n")[1],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_argument(h)
    h.add_argument("structure", help="structure file readable by ase.io.read")
    h.add_argument("--index", type=int, default=0, help="frame of the structure file (0)")
    source = h.add_mutually_exclusive_group(required=True)
    source.add_argument("--hessian", help="Hessian in eV/Angstrom^2: .npy or text, [3N, 3N]")
    source.add_argument("--vibrations", help="name (cache folder) of an ASE Vibrations run")
    h.add_argument("--dipole", help="structure-level dipole head: IR from its APTs")
    h.add_argument("--polarizability", help="structure-level polarizability head: Raman")
    h.add_argument("--apt", help="atom-level APT (Born-charge) head: IR from it directly")
    h.add_argument("--dipole-unit", help="override the dipole head's spec unit "
                                         "(e*Angstrom, Debye, e*bohr, au)")
    h.add_argument("--polarizability-unit", help="override the polarizability head's spec "
                                                 "unit (Angstrom^3, Bohr^3, au)")
    h.add_argument("-o", "--output", required=True, help="CSV of the broadened spectra")
    h.add_argument("--png", help="also plot sticks and broadened curves to this PNG")
    h.add_argument("--width", type=float, default=10.0, help="FWHM in cm^-1 (10)")
    h.add_argument("--shape", choices=["lorentzian", "gaussian"], default="lorentzian")
    h.add_argument("--grid", help="START:STOP:STEP in cm^-1 (default 0 to 10 widths above the "
                                  "highest mode, step 1)")
    h.set_defaults(func=cmd_harmonic)
