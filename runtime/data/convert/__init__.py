"""Converters from public tensor data sets to extended XYZ, the one input format of tsym.

Each converter reads one source file and returns ``(frames, report)``: a list of ``ase.Atoms``
with the labels in tsym's conventions and a :class:`ConversionReport` (counts, entries dropped
with their reasons, the largest index-symmetry deviation of each label, point-group invariance
for crystals, and converter-specific checks).  Conventions of the written labels:

==================================== ============ ======== ========================================
key                                  where        numbers  unit
==================================== ============ ======== ========================================
``mu`` (spec ``dipole``)             info         3        e*Angstrom
``polarizability``                   info         9        Bohr^3
``dielectric``                       info         9        dimensionless
``hyperpolarizability``              info         27       a.u. (e^3 Bohr^3 / Hartree^2)
``second_hyperpolarizability``       info         81       a.u. (e^4 Bohr^4 / Hartree^3)
``elastic``                          info         81       GPa
``piezoelectric``                    info         27       C/m^2 (stress tensor ``e_ijk``)
``born_charges``                     arrays       n x 9    e
``nmr_shielding`` (+ ``_mask``)      arrays       n x 9    ppm; NaN rows + mask for unlabelled atoms
==================================== ============ ======== ========================================

Every tensor is flattened row-major and expressed in the Cartesian frame of the structure written
with it.  ``dipole`` is not used as a key because ASE moves it into a calculator when reading.

>>> sorted(CONVERTERS)[:3]
['abo3_piezo', 'becs_epsilon_e3nn', 'elastic_matten']
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ase.io

from tsym.runtime.errors import DataError

from .common import LABEL_SPECS, ConversionReport
from .crystals import (convert_abo3_piezo, convert_becs_epsilon, convert_elastic_matten,
                       convert_nmr_si_matten, convert_piezo_mp_matminer)
from .magres import convert_nmr_shiftml
from .molecules import (BOHR_IN_ANGSTROM, convert_qm7x_cookbook,
                        convert_qm9_alpha_slice, convert_water_apt,
                        convert_water_gamma_tensoap, convert_water_sagpr)

__all__ = [
    "ConversionReport", "CONVERTERS", "LABEL_SPECS", "BOHR_IN_ANGSTROM",
    "convert", "write_extxyz",
    "convert_becs_epsilon", "convert_nmr_shiftml", "convert_elastic_matten", "convert_nmr_si_matten",
    "convert_piezo_mp_matminer", "convert_abo3_piezo", "convert_water_sagpr",
    "convert_water_apt", "convert_qm9_alpha_slice", "convert_qm7x_cookbook",
    "convert_water_gamma_tensoap",
]

#: source kind (the folder names of the shared data) -> converter
CONVERTERS: dict[str, Callable] = {
    "becs_epsilon_e3nn": convert_becs_epsilon,
    "elastic_matten": convert_elastic_matten,
    "nmr_si_matten": convert_nmr_si_matten,
    "water_sagpr": convert_water_sagpr,
    "qm9_alpha_slice": convert_qm9_alpha_slice,
    "piezo_mp_matminer": convert_piezo_mp_matminer,
    "water_apt": convert_water_apt,
    "abo3_piezo": convert_abo3_piezo,
    "qm7x_cookbook": convert_qm7x_cookbook,
    "water_gamma_tensoap": convert_water_gamma_tensoap,
    "nmr_shiftml_s546": convert_nmr_shiftml,
}


def convert(kind: str, path: str | Path, **options) -> tuple[list, ConversionReport]:
    """Run the converter of ``kind`` on ``path``; ``options`` go to it (e.g. ``limit=10``).

    Raises :class:`DataError` for an unknown kind, a missing file, or a file the converter cannot
    parse at all (single bad entries are dropped and counted in the report instead).
    """
    if kind not in CONVERTERS:
        raise DataError(str(path), None, f"unknown source kind {kind!r}",
                        hint=f"one of {', '.join(sorted(CONVERTERS))}")
    if not Path(path).is_file():
        raise DataError(str(path), None, "no such file")
    try:
        return CONVERTERS[kind](path, **options)
    except (OSError, ValueError, KeyError, StopIteration) as err:
        raise DataError(str(path), None, f"cannot convert as {kind} ({type(err).__name__}: "
                        f"{err})") from None


def write_extxyz(path: str | Path, frames: list) -> None:
    """Write ``frames`` as extended XYZ (ASE's writer; per-atom floats with 8 decimals)."""
    ase.io.write(str(path), frames, format="extxyz")
