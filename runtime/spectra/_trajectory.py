"""Spectra along a trajectory: IR from the dipole, Raman from the polarizability (linear response).

With ``mu(t)`` sampled every ``timestep`` fs (from a tsym dipole head on MD frames:
``model.predict(frames)["dipole"]``), the IR line shape is the Fourier transform of the
autocorrelation of the dipole's time derivative, ``I(w) ~ Re int <mu'(0) . mu'(t)> e^{-iwt} dt``;
the Raman line shapes are those of the isotropic part ``a(t) = tr alpha(t) / 3`` and of the
anisotropic part ``b(t) = alpha(t) - a(t) I`` (``<tr b'(0) b'(t)>``, times 2/15 for the
orientational average).  Derivatives in time are central differences (``numpy.gradient``); the
autocorrelation is computed by FFT with zero padding to ``2^k >= pad * T`` points (no wrap-around),
tapered with a half window (Hann, Blackman or none) and transformed again.  ``quantum_correction``
``"harmonic"`` multiplies by ``beta hbar w / (1 - exp(-beta hbar w))`` (temperature needed).
Intensities are in arbitrary units (the shape and relative heights only).
"""
from __future__ import annotations

import numpy as np
from ase import units

from tsym.runtime.spectra._derivatives import DerivativeError

__all__ = ["autocorrelation_spectrum", "ir_from_dipoles", "raman_from_polarizabilities"]

_WINDOWS = {"hann": np.hanning, "blackman": np.blackman, "none": np.ones}
#: cm^-1 of a frequency of 1 / fs
_PER_FS_IN_CM = 1e15 / (units._c * 100.0)


def _check(series, shape_tail: tuple[int, ...], what: str) -> np.ndarray:
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1 + len(shape_tail) or x.shape[1:] != shape_tail or x.shape[0] < 4:
        raise DerivativeError(f"the {what} have shape {x.shape}: expected (T >= 4, "
                              f"{', '.join(map(str, shape_tail))})")
    if not np.isfinite(x).all():
        raise DerivativeError(f"the {what} hold NaN or inf")
    return x


def autocorrelation_spectrum(signal, timestep: float, *, window: str = "hann", pad: int = 2,
                             temperature: float | None = None,
                             quantum_correction: str | None = None
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of ``sum_c <x_c(0) x_c(t)>`` of ``signal`` ``[T, C]`` sampled every ``timestep``
    fs: ``(wavenumbers [F] in cm^-1, intensity [F])``, from 0 to the Nyquist wavenumber."""
    x = np.asarray(signal, dtype=np.float64).reshape(len(signal), -1)  # [T, C]
    if not timestep > 0:
        raise DerivativeError(f"the timestep must be > 0 fs, got {timestep}")
    if window not in _WINDOWS:
        raise DerivativeError(f"unknown window '{window}': {sorted(_WINDOWS)}")
    t = x.shape[0]
    n = 1 << int(np.ceil(np.log2(max(pad, 1) * t)))  # zero padding, >= 2T: no wrap-around
    f = np.fft.rfft(x, n=n, axis=0)  # [n/2+1, C]
    acf = np.fft.irfft((f * f.conj()).real.sum(axis=1), n=n)[:t]  # [T] lags 0..T-1
    acf /= np.arange(t, 0, -1)  # unbiased: the number of pairs per lag
    acf *= _WINDOWS[window](2 * t)[t:]  # the falling half of a window of 2T points
    # the even extension of the ACF: a real, symmetric transform
    sym = np.concatenate([acf, np.zeros(n - 2 * t + 1), acf[:0:-1]])  # [n]
    spec = np.fft.rfft(sym).real * timestep  # [n/2+1]
    wavenumbers = np.fft.rfftfreq(n, d=timestep) * _PER_FS_IN_CM  # [n/2+1]
    if quantum_correction == "harmonic":
        if temperature is None or not temperature > 0:
            raise DerivativeError("the harmonic quantum correction needs a temperature > 0 K")
        x_b = wavenumbers * units.invcm / (units.kB * temperature)  # beta hbar omega
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(x_b > 0, x_b / -np.expm1(-np.where(x_b > 0, x_b, 1.0)), 1.0)
        spec = spec * factor
    elif quantum_correction is not None:
        raise DerivativeError(f"unknown quantum correction '{quantum_correction}': "
                              "None or 'harmonic'")
    return wavenumbers, spec


def ir_from_dipoles(dipoles, timestep: float, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """IR line shape from dipoles ``[T, 3]`` every ``timestep`` fs (any unit: arbitrary units
    out); keyword arguments as :func:`autocorrelation_spectrum`."""
    mu = _check(dipoles, (3,), "dipoles")
    return autocorrelation_spectrum(np.gradient(mu, timestep, axis=0), timestep, **kwargs)


def raman_from_polarizabilities(polarizabilities, timestep: float, **kwargs
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isotropic and anisotropic Raman line shapes from ``[T, 3, 3]`` every ``timestep`` fs:
    ``(wavenumbers, isotropic, anisotropic)`` (arbitrary units, the same for both)."""
    alpha = _check(polarizabilities, (3, 3), "polarizabilities")
    alpha = 0.5 * (alpha + alpha.transpose(0, 2, 1))  # [T, 3, 3]
    iso = np.trace(alpha, axis1=1, axis2=2) / 3.0  # [T]
    aniso = alpha - iso[:, None, None] * np.eye(3)  # [T, 3, 3]
    nu, s_iso = autocorrelation_spectrum(np.gradient(iso, timestep, axis=0)[:, None], timestep,
                                         **kwargs)
    _, s_aniso = autocorrelation_spectrum(np.gradient(aniso, timestep, axis=0).reshape(-1, 9),
                                          timestep, **kwargs)
    return nu, s_iso, 2.0 / 15.0 * s_aniso
