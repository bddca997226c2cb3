"""A tsym model's harmonic spectrum: its derivative tensors on a Hessian's normal modes.

The APTs come from a structure-level dipole head (by autograd) or directly from an atom-level
rank-2 head (Born charges); the Raman tensors from a structure-level polarizability head.  Units
are read from the heads' specs (``units "Bohr^3"``) unless given.
"""
from __future__ import annotations

from collections.abc import Mapping

from ase import Atoms

from tsym.compiler import HeadPlan
from tsym.runtime.spectra._derivatives import DerivativeError, derivatives
from tsym.runtime.spectra._harmonic import HarmonicSpectrum, harmonic_spectrum

__all__ = ["model_spectrum"]


def _plan(model, name: str | None, level: str, order: int, role: str) -> HeadPlan | None:
    if name is None:
        return None
    plans = model.plans
    plans = dict(plans) if isinstance(plans, Mapping) else {p.name: p for p in plans}
    if name not in plans:
        raise DerivativeError(f"the model has no head '{name}' for the {role} (heads: "
                              f"{sorted(plans)}); name it with the {role} argument")
    plan = plans[name]
    if plan.level != level or plan.order != order:
        raise DerivativeError(f"head '{name}' is a rank-{plan.order} {plan.level}-level tensor; "
                              f"the {role} needs a rank-{order} {level}-level one")
    return plan


def model_spectrum(model, atoms: Atoms, hessian, *, dipole: str | None = None,
                   polarizability: str | None = None, apt: str | None = None,
                   dipole_unit: str | None = None, polarizability_unit: str | None = None,
                   project: bool = True) -> HarmonicSpectrum:
    """The harmonic IR/Raman spectrum of ``atoms`` from ``model``'s heads.

    Parameters
    ----------
    model : TensorModel or TrainedModel
    atoms : ase.Atoms
    hessian : array or ase VibrationsData
        See :func:`~tsym.runtime.spectra.harmonic_spectrum` (eV/Angstrom^2).
    dipole : str, optional
        A structure-level rank-1 head: IR intensities from its APTs (autograd).
    polarizability : str, optional
        A structure-level rank-2 head: Raman activities from its Raman tensors (autograd).
    apt : str, optional
        An atom-level rank-2 head read as the APTs directly (``[i, a, b] = d mu_a/d r_(i,b)``,
        the Born-charge order); instead of ``dipole``.
    dipole_unit, polarizability_unit : str, optional
        Override the heads' spec units (which must otherwise be known ones).

    Raises
    ------
    DerivativeError
        No head named, a head the model lacks or of the wrong rank or level, both ``dipole``
        and ``apt``, or a bad Hessian.
    """
    if dipole is None and polarizability is None and apt is None:
        raise DerivativeError("name a dipole, polarizability or apt head of the model")
    if dipole is not None and apt is not None:
        raise DerivativeError("give dipole (APTs by autograd) or apt (an APT head), not both")
    p_mu = _plan(model, dipole, "structure", 1, "dipole")
    p_alpha = _plan(model, polarizability, "structure", 2, "polarizability")
    p_apt = _plan(model, apt, "atom", 2, "apt")
    heads = [p.name for p in (p_mu, p_alpha) if p is not None]
    grads = derivatives(model, atoms, heads) if heads else {}
    apt_value = grads.get(dipole)
    if p_apt is not None:
        apt_value = model.predict([atoms])[p_apt.name]
    mu_plan = p_mu or p_apt
    return harmonic_spectrum(
        atoms, hessian, apt=apt_value, raman=grads.get(polarizability),
        dipole_unit=dipole_unit or (mu_plan.units if mu_plan is not None else None),
        polarizability_unit=polarizability_unit or (p_alpha.units if p_alpha else None),
        project=project)
