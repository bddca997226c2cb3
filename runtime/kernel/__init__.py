"""Kernel (Gaussian-process) readouts on frozen equivariant node features, with uncertainty.

``extract_features`` runs a model's backbone; ``KernelReadout`` fits one plan's irreps
coordinates with covariant kernels (exact, or a projected process beyond a few thousand
structures) and predicts means and variances; ``calibration`` and ``extrapolation`` judge them.
A committee (:func:`load_committee`, :func:`predict_committee`) gives the same kind of
prediction from several runs of one config: their mean, and their spread as its uncertainty.
"""
from tsym.runtime.kernel._calibration import calibration, calibration_plot, extrapolation
from tsym.runtime.kernel._committee import (Member, check_scale_source, committee_unseen,
                                            evaluate_committee, fit_scale, fit_scales,
                                            load_committee,
                                            predict_committee, scale_prediction,
                                            validation_file)
from tsym.runtime.kernel._covariant import Environments, group_kernel, self_kernel
from tsym.runtime.kernel._features import FeatureSet, extract_features
from tsym.runtime.kernel._files import load_readouts, save_readouts
from tsym.runtime.kernel._readout import KernelReadout
from tsym.runtime.kernel._workflow import (evaluate_kernels, fit_kernels, load_kernels,
                                           predict_kernels, save_kernels)

__all__ = ["FeatureSet", "extract_features", "KernelReadout", "save_readouts", "load_readouts",
           "Environments", "group_kernel", "self_kernel", "calibration", "calibration_plot",
           "extrapolation", "fit_kernels", "save_kernels", "load_kernels", "predict_kernels",
           "evaluate_kernels", "Member", "load_committee", "predict_committee", "fit_scale",
           "fit_scales", "scale_prediction", "committee_unseen", "evaluate_committee",
           "validation_file", "check_scale_source"]
