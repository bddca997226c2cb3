"""tsym.runtime.spectra: derivative tensors of a model and the spectra built on them.

* :func:`derivatives`, :func:`graph_derivatives`: ``d y / d r_i`` of structure-level heads by
  autograd (APTs from a dipole head, Raman tensors from a polarizability head);
* :func:`normal_modes`, :func:`harmonic_spectrum`, :func:`model_spectrum`,
  :class:`HarmonicSpectrum`: IR intensities (km/mol), Raman activities (Angstrom^4/amu) and
  depolarisation ratios of the harmonic modes of a Hessian;
* :func:`broaden`, :func:`write_csv`, :func:`plot_spectrum`: broadened spectra to CSV and PNG;
* :func:`ir_from_dipoles`, :func:`raman_from_polarizabilities`: line shapes along a trajectory
  (autocorrelation functions of the time derivatives); :func:`write_trajectory_csv`,
  :func:`plot_trajectory_spectrum`: their CSV and PNG.
"""
from tsym.runtime.spectra._derivatives import (DerivativeError, derivatives, graph_derivatives,
                                               structure_heads)
from tsym.runtime.spectra._harmonic import (IR_KM_PER_MOL, HarmonicSpectrum, harmonic_spectrum,
                                            normal_modes, rigid_body_basis)
from tsym.runtime.spectra._model import model_spectrum
from tsym.runtime.spectra._output import (broaden, default_grid, plot_spectrum,
                                          plot_trajectory_spectrum, write_csv,
                                          write_trajectory_csv)
from tsym.runtime.spectra._trajectory import (autocorrelation_spectrum, ir_from_dipoles,
                                              raman_from_polarizabilities)
from tsym.runtime.spectra._units import SPECTRUM_UNITS

__all__ = ["derivatives", "graph_derivatives", "DerivativeError", "HarmonicSpectrum",
           "normal_modes", "harmonic_spectrum", "model_spectrum", "broaden", "write_csv",
           "plot_spectrum", "SPECTRUM_UNITS", "IR_KM_PER_MOL", "rigid_body_basis",
           "structure_heads", "default_grid", "ir_from_dipoles", "raman_from_polarizabilities",
           "autocorrelation_spectrum", "write_trajectory_csv", "plot_trajectory_spectrum"]
