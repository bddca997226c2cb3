"""Trajectory spectra on synthetic signals with known peaks.

A dipole ``A1 cos(w1 t) e_x + A2 cos(w2 t) e_y`` has a time derivative of amplitudes ``A_k w_k``,
so its IR line shape has peaks at ``w1`` and ``w2`` whose areas are in the ratio
``(A1 w1)^2 / (A2 w2)^2``.  Resolution: a 20 ps record sampled at 1 fs, zero-padded to 65,536
points, has a grid of 0.51 cm^-1; the Hann window widens a line to a few grid points, so peaks
are located to 1 cm^-1 and areas (summed over +-30 cm^-1) agree to 2% (the window's leakage
outside that band, measured below 0.5%).
"""
from __future__ import annotations

import numpy as np
import pytest
from ase import units

from tsym.runtime.spectra import DerivativeError, ir_from_dipoles, raman_from_polarizabilities

DT = 1.0  # fs
T = 20000
NU1, NU2 = 1650.0, 3400.0  # cm^-1


def _omega(nu):  # rad/fs
    return 2 * np.pi * nu * units._c * 100.0 * 1e-15


def _area(nu, spec, centre, half=30.0):
    band = np.abs(nu - centre) <= half
    return spec[band].sum()


def test_ir_peaks_and_areas():
    t = np.arange(T) * DT
    a1, a2 = 1.0, 0.4
    mu = np.zeros((T, 3))
    mu[:, 0] = a1 * np.cos(_omega(NU1) * t)
    mu[:, 1] = a2 * np.cos(_omega(NU2) * t + 0.3)
    nu, spec = ir_from_dipoles(mu, DT)
    assert nu[1] - nu[0] < 0.6
    for centre in (NU1, NU2):
        band = np.abs(nu - centre) <= 30
        assert abs(nu[band][np.argmax(spec[band])] - centre) <= 1.0
    # central differences damp a line by sinc(w dt)^2: the same factor for both sides below
    damp = [np.sinc(_omega(c) * DT / np.pi) ** 2 for c in (NU1, NU2)]
    want = (a1 * NU1) ** 2 * damp[0] / ((a2 * NU2) ** 2 * damp[1])
    assert _area(nu, spec, NU1) / _area(nu, spec, NU2) == pytest.approx(want, rel=0.02)
    off = (np.abs(nu - NU1) > 30) & (np.abs(nu - NU2) > 30)
    assert spec[off].sum() < 5e-3 * spec.sum()


def test_raman_isotropic_and_anisotropic_parts():
    t = np.arange(T) * DT
    alpha = np.zeros((T, 3, 3))
    alpha += (10.0 + 0.5 * np.cos(_omega(NU1) * t))[:, None, None] * np.eye(3)  # breathing
    alpha[:, 0, 0] += 0.3 * np.cos(_omega(NU2) * t)  # traceless: aniso only
    alpha[:, 1, 1] -= 0.3 * np.cos(_omega(NU2) * t)
    nu, iso, aniso = raman_from_polarizabilities(alpha, DT)
    # what each part holds at the other's line is the window's leakage of its own line,
    # ~2e-6 of it 1750 cm^-1 away (measured); a wrong split would put O(1) there
    assert _area(nu, iso, NU1) > 1e4 * abs(_area(nu, iso, NU2))
    assert _area(nu, aniso, NU2) > 1e4 * abs(_area(nu, aniso, NU1))


def test_quantum_correction_and_errors():
    t = np.arange(2000) * DT
    mu = np.stack([np.cos(_omega(NU1) * t), 0 * t, 0 * t], axis=1)
    nu, classical = ir_from_dipoles(mu, DT)
    _, corrected = ir_from_dipoles(mu, DT, quantum_correction="harmonic", temperature=300.0)
    k = np.argmax(classical)
    x = nu[k] * units.invcm / (units.kB * 300.0)
    assert corrected[k] / classical[k] == pytest.approx(x / (1 - np.exp(-x)), rel=1e-12)
    with pytest.raises(DerivativeError, match=r"^the harmonic quantum correction needs"):
        ir_from_dipoles(mu, DT, quantum_correction="harmonic")
    with pytest.raises(DerivativeError, match=r"^the dipoles have shape \(5, 2\)"):
        ir_from_dipoles(np.zeros((5, 2)), DT)


def test_trajectory_csv_and_png(tmp_path):
    """The CSV holds the grid and each curve (8 significant digits: relative 5e-8), cut at
    ``max_wavenumber``; the PNG is a PNG; a curve off the grid is refused."""
    from tsym.runtime.spectra import plot_trajectory_spectrum, write_trajectory_csv

    t = np.arange(2000) * DT
    alpha = (10.0 + 0.5 * np.cos(_omega(NU1) * t))[:, None, None] * np.eye(3)  # [T, 3, 3]
    nu, iso, aniso = raman_from_polarizabilities(alpha, DT)
    path = write_trajectory_csv(tmp_path / "r.csv", nu, {"iso": iso, "aniso": aniso},
                                max_wavenumber=4000)
    with open(path) as fh:
        assert fh.readline().strip() == "wavenumber_cm-1,iso,aniso"
    table = np.loadtxt(path, delimiter=",", skiprows=1)  # [P, 3]
    keep = nu <= 4000
    assert table.shape == (keep.sum(), 3)
    np.testing.assert_allclose(table[:, 0], nu[keep], rtol=0, atol=5e-5)  # 4 decimals
    np.testing.assert_allclose(table[:, 1], iso[keep], rtol=5e-8, atol=0)
    np.testing.assert_allclose(table[:, 2], aniso[keep], rtol=5e-8, atol=1e-300)
    png = plot_trajectory_spectrum(tmp_path / "r.png", nu, {"iso": iso, "aniso": aniso})
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DerivativeError, match="the curve 'iso' has shape"):
        write_trajectory_csv(tmp_path / "x.csv", nu, {"iso": iso[:-1]})
