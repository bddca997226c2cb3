"""``TsymCalculator``: a tsym model as an ASE calculator, alone or over the user's potential.

Its ``results`` hold each head under its spec name (structure level ``[3, ..., 3]``, atom level
``[n_atoms, 3, ..., 3]``) and, for the spec names of :data:`ASE_NAMES` of the right level and
rank, also under ASE's property name (``dipole``, ``dielectric_tensor``,
``born_effective_charges``, ...), so ``atoms.get_dipole_moment()`` works.  With
``derivatives=True`` (or a list of heads) each structure-level head ``h`` also gives
``h_derivatives`` ``[n_atoms, 3, ..., 3, 3]``, ``d h[a, ...] / d r_(i, c)`` by autograd
(:func:`tsym.runtime.spectra.derivatives`): the APTs of a dipole head, the Raman tensors of a
polarizability head.  With a ``base`` calculator (EMT, a machine-learned potential, DFT) the
energies, forces and stresses come from it, so one ``Atoms`` runs MD or ``ase.vibrations`` on
the potential while the tensors come from tsym.  :attr:`TsymCalculator.units` names the unit of
every property (the spec's ``units``; ASE's eV and Angstrom for the base's).

>>> from ase.build import molecule
>>> from ase.calculators.emt import EMT
>>> calc = TsymCalculator(load_model("runs/dipole"), base=EMT(), derivatives=True)  # doctest: +SKIP
>>> water = molecule("H2O"); water.calc = calc                                      # doctest: +SKIP
>>> water.get_forces(), water.get_dipole_moment(), calc.get_property("dipole_derivatives")  # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from tsym.compiler import HeadPlan
from tsym.runtime.inference.predict import ASE_NAMES, load_model, model_plans
from tsym.runtime.spectra import derivatives as position_derivatives
from tsym.runtime.spectra import structure_heads

__all__ = ["TsymCalculator", "BASE_UNITS", "DERIVATIVE_SUFFIX"]

#: units of the properties an ASE calculator reports (ASE's own: eV, Angstrom)
BASE_UNITS = {"energy": "eV", "free_energy": "eV", "energies": "eV", "forces": "eV/Angstrom",
              "stress": "eV/Angstrom^3", "stresses": "eV/Angstrom^3", "magmom": "mu_B",
              "magmoms": "mu_B", "charges": "e", "dipole": "e*Angstrom"}
DERIVATIVE_SUFFIX = "_derivatives"


def _aliases(plans: dict[str, HeadPlan]) -> dict[str, str]:
    """``{spec name: ASE property}`` for the specs of :data:`ASE_NAMES` of the right shape."""
    out = {}
    for name, plan in plans.items():
        if name in ASE_NAMES:
            ase_name, level, order = ASE_NAMES[name]
            other_spec = ase_name != name and ase_name in plans  # that spec keeps the name
            if plan.level == level and plan.order == order and not other_spec:
                out[name] = ase_name
    return out


class TsymCalculator(Calculator):
    """An ASE calculator for a tsym model's tensors, optionally over a base calculator.

    Parameters
    ----------
    model : TrainedModel, TensorModel, or a path for :func:`load_model`
    base : ase.calculators.calculator.Calculator, optional
        Gives every property it implements that the model does not (energy, forces, ...).
    derivatives : bool or sequence of str
        ``True``: the position derivatives of every structure-level head; a list: of those
        heads; reported as ``NAME_derivatives`` ``[n_atoms, 3, ..., 3, 3]``.
    **kwargs
        Passed to ``ase.calculators.calculator.Calculator``.

    Attributes
    ----------
    implemented_properties : list of str
        ASE names of the heads, the spec names, the derivatives, then the base's properties.
    aliases : dict of str to str
        Spec name -> ASE property name.
    units : dict of str to str
        Property -> unit (a head's spec ``units``, "unspecified" where the spec gives none).
    """

    implemented_properties: list[str] = []

    def __init__(self, model, base: Calculator | None = None,
                 derivatives: bool | Sequence[str] = False, **kwargs):
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        self.model = model
        self.base = base
        self.plans = model_plans(model)
        self.aliases = _aliases(self.plans)
        if derivatives is True:
            heads = structure_heads(model)
        else:
            heads = structure_heads(model, list(derivatives)) if derivatives else []
        self.derivative_heads = {name + DERIVATIVE_SUFFIX: name for name in heads}
        own = list(self.aliases.values()) + list(self.plans) + list(self.derivative_heads)
        self._own = set(own)
        base_props = [p for p in getattr(base, "implemented_properties", []) if p not in self._own]
        self.implemented_properties = list(dict.fromkeys(own + base_props))  # unique, in order
        self.units = {p: BASE_UNITS.get(p, "as the base calculator reports it")
                      for p in base_props}
        for name, plan in self.plans.items():
            self.units[name] = plan.units or "unspecified (the spec gives no units)"
        for name, ase_name in self.aliases.items():
            self.units[ase_name] = self.units[name]
        for key, name in self.derivative_heads.items():
            self.units[key] = f"({self.units[name]})/Angstrom"
        super().__init__(**kwargs)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        """Compute ``properties``: the base's from the base, the heads (all in one pass) and
        the derivatives (all in one autograd run) from the model, each when first asked for."""
        super().calculate(atoms, properties, system_changes)
        asked = set(properties or ()) or set(self.plans)
        for prop in sorted(asked - self._own):
            if self.base is not None and prop in self.base.implemented_properties:
                self.results[prop] = self.base.get_property(prop, self.atoms)
        if asked & (set(self.plans) | set(self.aliases.values())) and not (
                set(self.plans) <= set(self.results)):
            preds = self.model.predict([self.atoms])
            for name, plan in self.plans.items():
                value = np.asarray(preds[name], dtype=np.float64)
                value = value if plan.level == "atom" else value[0]  # [n, 3..] or [3..]
                self.results[name] = value
                if name in self.aliases:
                    self.results[self.aliases[name]] = value.copy()
        if asked & set(self.derivative_heads) and not (
                set(self.derivative_heads) <= set(self.results)):
            grads = position_derivatives(self.model, [self.atoms],
                                         list(self.derivative_heads.values()))
            for key, name in self.derivative_heads.items():
                self.results[key] = np.asarray(grads[name], dtype=np.float64)
