"""Broadened spectra, their CSV table and a stick-plus-broadened plot.

:func:`broaden` places an area-normalised Lorentzian or Gaussian of full width at half maximum
``width`` (cm^-1) at each mode, so the integral of the curve over wavenumber is the sum of the
strengths (units: the strength's per cm^-1); ASE's ``Vibrations.fold(..., normalize=True)`` is the
same curve (checked in the tests) written as a loop.

:func:`write_trajectory_csv` and :func:`plot_trajectory_spectrum` write and draw the line shapes
of a trajectory (:func:`ir_from_dipoles`, :func:`raman_from_polarizabilities`): one wavenumber
grid, one column (one panel) per named curve.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from tsym.runtime.spectra._derivatives import DerivativeError
from tsym.runtime.spectra._harmonic import HarmonicSpectrum

__all__ = ["broaden", "write_csv", "plot_spectrum", "default_grid", "write_trajectory_csv",
           "plot_trajectory_spectrum"]


def default_grid(spectrum: HarmonicSpectrum, width: float, step: float = 1.0) -> np.ndarray:
    """``[P]`` wavenumbers from 0 (or below the lowest mode) to 10 widths above the highest."""
    nu = spectrum.wavenumbers
    lo = min(0.0, float(nu.min()) - 10 * width) if len(nu) else 0.0
    hi = (float(nu.max()) if len(nu) else 0.0) + 10 * width
    return np.arange(lo, hi + step, step)


def broaden(centres, strengths, grid, width: float, shape: str = "lorentzian") -> np.ndarray:
    """``[P]`` sum over modes of ``strength * kernel(grid - centre)``, area-normalised kernels.

    ``centres`` ``[M]`` and ``grid`` ``[P]`` in cm^-1, ``width`` the FWHM in cm^-1, ``shape``
    ``"lorentzian"`` or ``"gaussian"``.
    """
    if not width > 0:
        raise DerivativeError(f"the broadening width must be > 0 cm^-1, got {width}")
    x = np.asarray(grid, dtype=np.float64)[:, None] - np.asarray(centres)[None, :]  # [P, M]
    if shape.lower() == "lorentzian":
        half = 0.5 * width
        kernel = half / np.pi / (x ** 2 + half ** 2)
    elif shape.lower() == "gaussian":
        sigma = width / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        kernel = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    else:
        raise DerivativeError(f"unknown line shape '{shape}': lorentzian or gaussian")
    return kernel @ np.asarray(strengths, dtype=np.float64)  # [P]


def _columns(spectrum: HarmonicSpectrum):
    """(name, unit, values [M]) of each strength the spectrum holds."""
    out = []
    if spectrum.dipole_derivatives is not None:
        out.append(("ir", "km/mol", spectrum.ir_intensities))
    if spectrum.polarizability_derivatives is not None:
        out.append(("raman", "Angstrom^4/amu", spectrum.raman_activities))
    return out


def write_csv(spectrum: HarmonicSpectrum, path: str | os.PathLike, grid=None,
              width: float = 10.0, shape: str = "lorentzian") -> tuple[str, str]:
    """Write ``PATH`` (the broadened curves on ``grid``) and ``PATH`` with ``_modes`` before its
    suffix (one row a mode: wavenumber, IR intensity, Raman activity, depolarisation ratio).
    Returns both paths."""
    grid = default_grid(spectrum, width) if grid is None else np.asarray(grid, dtype=np.float64)
    cols = _columns(spectrum)
    root, ext = os.path.splitext(os.fspath(path))
    modes_path = f"{root}_modes{ext or '.csv'}"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["wavenumber_cm-1"] + [f"{n}_{u}_per_cm-1" for n, u, _ in cols])
        curves = [broaden(spectrum.wavenumbers, v, grid, width, shape) for _, _, v in cols]
        for p, x in enumerate(grid):
            w.writerow([f"{x:.4f}"] + [f"{c[p]:.8g}" for c in curves])
    with open(modes_path, "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["mode", "wavenumber_cm-1"] + [f"{n}_{u}" for n, u, _ in cols]
        rho = spectrum.depolarization_ratios
        w.writerow(header + (["depolarization_ratio"] if rho is not None else []))
        for k, nu in enumerate(spectrum.wavenumbers):
            extra = [f"{rho[k]:.6g}"] if rho is not None else []
            w.writerow([k, f"{nu:.4f}"] + [f"{v[k]:.8g}" for _, _, v in cols] + extra)
    return os.fspath(path), modes_path


def plot_spectrum(spectrum: HarmonicSpectrum, path: str | os.PathLike, grid=None,
                  width: float = 10.0, shape: str = "lorentzian", label_above: float = 0.05
                  ) -> str:
    """A PNG: per strength (IR, Raman) one panel with the sticks (left axis) and the broadened
    curve (right axis); sticks above ``label_above`` of the largest carry their wavenumber."""
    import matplotlib  # the plotting library loads only here
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = default_grid(spectrum, width) if grid is None else np.asarray(grid, dtype=np.float64)
    cols = _columns(spectrum)
    if not cols:
        raise DerivativeError("the spectrum has neither IR intensities nor Raman activities")
    nu = spectrum.wavenumbers
    fig, axes = plt.subplots(len(cols), 1, figsize=(8, 3.2 * len(cols)), squeeze=False)
    for ax, (name, unit, values) in zip(axes[:, 0], cols):
        ax.vlines(nu, 0, values, color="k", lw=1.2)
        top = float(values.max()) if len(values) else 0.0
        for k in np.flatnonzero(values > label_above * top) if top > 0 else []:
            ax.annotate(f"{nu[k]:.0f}", (nu[k], values[k]), textcoords="offset points",
                        xytext=(0, 2), ha="center", fontsize=7)
        ax.set_ylabel(f"{'IR' if name == 'ir' else 'Raman'} ({unit})")
        twin = ax.twinx()
        twin.plot(grid, broaden(nu, values, grid, width, shape), color="tab:red", lw=1.0)
        twin.set_ylabel(f"{shape}, FWHM {width:g} ({unit} per cm$^{{-1}}$)", color="tab:red")
        ax.set_xlim(grid[0], grid[-1])
    return _save(fig, axes, path)


def _curves(wavenumbers, curves: dict, max_wavenumber: float | None
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The grid ``[P]`` and each curve ``[P]``, cut at ``max_wavenumber``, checked."""
    nu = np.asarray(wavenumbers, dtype=np.float64)
    if nu.ndim != 1 or not curves:
        raise DerivativeError(f"expected a 1-d wavenumber grid and at least one curve, got "
                              f"a grid of shape {nu.shape} and {len(curves)} curves")
    out = {}
    for name, values in curves.items():
        y = np.asarray(values, dtype=np.float64)
        if y.shape != nu.shape:
            raise DerivativeError(f"the curve '{name}' has shape {y.shape}, the wavenumbers "
                                  f"{nu.shape}")
        out[name] = y
    keep = nu <= max_wavenumber if max_wavenumber is not None else np.ones(len(nu), bool)
    return nu[keep], {name: y[keep] for name, y in out.items()}


def write_trajectory_csv(path: str | os.PathLike, wavenumbers, curves: dict,
                         max_wavenumber: float | None = None) -> str:
    """Write the line shapes of a trajectory to ``path``: a column ``wavenumber_cm-1``, then one
    per entry of ``curves`` (``{name: [P]}``, arbitrary units), rows up to ``max_wavenumber``.
    Returns the path."""
    nu, cols = _curves(wavenumbers, curves, max_wavenumber)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["wavenumber_cm-1"] + list(cols))
        for p, x in enumerate(nu):
            w.writerow([f"{x:.4f}"] + [f"{c[p]:.8g}" for c in cols.values()])
    return os.fspath(path)


def plot_trajectory_spectrum(path: str | os.PathLike, wavenumbers, curves: dict,
                             max_wavenumber: float | None = None) -> str:
    """A PNG of the line shapes of a trajectory, one panel per entry of ``curves``
    (``{name: [P]}``), each scaled to its largest value; returns the path."""
    import matplotlib  # the plotting library loads only here
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nu, cols = _curves(wavenumbers, curves, max_wavenumber)
    fig, axes = plt.subplots(len(cols), 1, figsize=(8, 2.8 * len(cols)), squeeze=False)
    for ax, (name, y) in zip(axes[:, 0], cols.items()):
        top = float(np.abs(y).max()) if len(y) else 0.0
        ax.plot(nu, y / top if top > 0 else y, color="k", lw=1.0)
        ax.set_ylabel(f"{name} (scaled)")
        ax.set_xlim(nu[0], nu[-1])
    return _save(fig, axes, path)


def _save(fig, axes, path: str | os.PathLike) -> str:
    """Label the bottom axis in wavenumbers, write ``fig`` to ``path`` as PNG, close it."""
    import matplotlib.pyplot as plt

    axes[-1, 0].set_xlabel("wavenumber (cm$^{-1}$)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return os.fspath(path)
