"""Units of the spectra: the values of the model's tensor units in ASE's (``ase.units``).

Dipoles are converted to e*Angstrom and polarizabilities to Angstrom^3 (the polarizability
volume ``alpha / (4 pi eps0)``); a unit is read from the head's spec (``units "Bohr^3"``) unless
the caller names one.  Names are matched without regard to case, spaces, ``.`` and ``*``.

>>> dipole_factor("Debye") == units.Debye
True
>>> polarizability_factor("Bohr^3") == units.Bohr ** 3
True
"""
from __future__ import annotations

from ase import units

from tsym.runtime.spectra._derivatives import DerivativeError

__all__ = ["DIPOLE_UNITS", "POLARIZABILITY_UNITS", "dipole_factor", "polarizability_factor",
           "SPECTRUM_UNITS"]

#: one dipole unit in e*Angstrom
DIPOLE_UNITS = {"eangstrom": 1.0, "ea": 1.0, "debye": units.Debye, "d": units.Debye,
                "ebohr": units.Bohr, "ea0": units.Bohr, "au": units.Bohr}
#: one polarizability unit in Angstrom^3 (atomic units: e^2 a0^2 / E_h = 4 pi eps0 a0^3)
POLARIZABILITY_UNITS = {"angstrom^3": 1.0, "a^3": 1.0, "bohr^3": units.Bohr ** 3,
                        "a0^3": units.Bohr ** 3, "au": units.Bohr ** 3}

#: the units of every quantity of a :class:`~tsym.runtime.spectra.HarmonicSpectrum`
SPECTRUM_UNITS = {
    "wavenumbers": "cm^-1 (an imaginary frequency as a negative number)",
    "energies": "eV",
    "modes": "amu^-1/2 (Angstrom of displacement per Angstrom amu^1/2 of normal coordinate)",
    "ir_intensities": "km/mol",
    "dipole_derivatives": "e amu^-1/2 (d mu / d Q)",
    "raman_activities": "Angstrom^4/amu",
    "polarizability_derivatives": "Angstrom^2 amu^-1/2 (d alpha / d Q)",
    "depolarization_ratios": "1 (plane-polarised light)",
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in " .*_")


def _factor(table: dict, name: str | None, what: str, default: str) -> float:
    key = _key(name or default)
    if key not in table:
        raise DerivativeError(f"unknown {what} unit '{name}': give one of "
                              f"{sorted(set(table))} (case, spaces, '*' and '.' ignored)")
    return table[key]


def dipole_factor(name: str | None) -> float:
    """One ``name`` (default e*Angstrom) in e*Angstrom; :class:`DerivativeError` if unknown."""
    return _factor(DIPOLE_UNITS, name, "dipole", "e*Angstrom")


def polarizability_factor(name: str | None) -> float:
    """One ``name`` (default Angstrom^3) in Angstrom^3; :class:`DerivativeError` if unknown."""
    return _factor(POLARIZABILITY_UNITS, name, "polarizability", "Angstrom^3")
