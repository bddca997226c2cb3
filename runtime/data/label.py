"""Reference tensor labels for small molecules from PySCF (the optional extra ``tsym[label]``).

One self-consistent field run per structure gives every requested property:

================== ================ ========================= =======================================
key                shape            unit                      definition
================== ================ ========================= =======================================
``energy``         ``()``           Hartree                   total RHF energy
``dipole``         ``(3,)``         e * Bohr (atomic units)   mu_i (nuclear + electronic)
``polarizability`` ``(3, 3)``       Bohr^3 (atomic units)     alpha_ij = d mu_i / d E_j (symmetric)
``hyperpolarizability`` ``(3, 3, 3)`` atomic units            beta_ijk = d^2 mu_i / dE_j dE_k
                                                              (static: fully index-symmetric)
``nmr_shielding``  ``(n_atoms, 3, 3)`` ppm                    GIAO sigma_ab per atom, a = external
                                                              field B, b = nuclear moment (not
                                                              symmetric)
================== ================ ========================= =======================================

All tensors are expressed in the Cartesian frame of the input positions (PySCF is never allowed to
reorient the molecule), so they rotate with the structure: ``mu -> R mu``, ``alpha -> R alpha R^T``,
and so on.  The field ``E`` enters the Hamiltonian as the physical field (an electron's energy rises
by ``+E . r``), so ``alpha`` is positive definite.

PySCF and ``pyscf-properties`` are imported lazily: the rest of tsym works without them.  GIAO NMR
shielding needs PySCF < 2.5 (``pyscf.prop.nmr`` fails on later versions); polarizabilities work on
current PySCF.

Examples
--------
>>> from ase.build import molecule  # doctest: +SKIP
>>> labels = label_molecule(molecule("H2O"), ("dipole", "polarizability"), basis="sto-3g")  # doctest: +SKIP
>>> labels["polarizability"].shape  # doctest: +SKIP
(3, 3)
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterable, Sequence

import numpy as np

from tsym.runtime.errors import LabelError

__all__ = ["PROPERTIES", "STORAGE_KEYS", "label_molecule", "label_structures", "attach_labels",
           "level_of_theory"]

# Every property label_molecule can compute, with its per-structure or per-atom shape.
PROPERTIES = ("dipole", "polarizability", "hyperpolarizability", "nmr_shielding")
PER_ATOM = frozenset({"nmr_shielding"})
# Property name -> key in the extxyz file where the two differ (ASE claims "dipole" and "energy").
STORAGE_KEYS = {"dipole": "mu", "energy": "scf_energy"}
_INSTALL_HINT = ("install the optional extra: pip install 'tsym[label]' (or: pip install pyscf && "
                 "pip install --no-deps pyscf-properties==0.1.0)")
_NMR_HINT = ("GIAO NMR shielding (pyscf.prop.nmr) works only with PySCF < 2.5, e.g. in a separate "
             "environment: pip install pyscf==2.4.0 numpy==1.26.4 scipy==1.13.1 && "
             "pip install --no-deps pyscf-properties==0.1.0")


def _error(message: str, hint: str | None = None) -> LabelError:
    return LabelError(message + (f"\nhint: {hint}" if hint else ""))


def _import_pyscf():
    """Return ``(pyscf, gto, scf, polarizability_rhf)`` or raise a LabelError with the hint."""
    try:
        import pyscf
        from pyscf import gto, scf
        with warnings.catch_warnings():  # pyscf.prop warns "under testing" for every sub-module
            warnings.simplefilter("ignore")
            from pyscf.prop.polarizability import rhf as pol_rhf
    except ImportError as exc:
        raise _error(f"labelling needs PySCF with pyscf-properties ({exc})", _INSTALL_HINT) from None
    return pyscf, gto, scf, pol_rhf


def _pyscf_version(pyscf) -> tuple[int, int]:
    parts = (pyscf.__version__.split(".") + ["0"])[:2]
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts)


def level_of_theory(method: str = "RHF", basis: str = "6-31G*") -> str:
    """The string stored with every labelled structure.

    >>> level_of_theory("rhf", "6-31G*")
    'RHF/6-31G*'
    """
    return f"{method.upper()}/{basis}"


def _check_request(properties: Sequence[str], method: str) -> tuple[str, ...]:
    props = tuple(properties)
    unknown = [p for p in props if p not in PROPERTIES]
    if unknown:
        raise _error(f"unknown property {unknown[0]!r}",
                     f"choose from {', '.join(PROPERTIES)}")
    if method.upper() != "RHF":
        raise _error(f"method {method!r} is not supported", "use method='RHF'")
    return props


def label_molecule(atoms, properties: Sequence[str] = PROPERTIES, basis: str = "6-31G*",
                   method: str = "RHF", charge: int = 0, conv_tol: float = 1e-11,
                   ) -> dict[str, np.ndarray]:
    """Compute reference tensors for one closed-shell molecule.

    Parameters
    ----------
    atoms : ase.Atoms
        Positions in Angstrom; the cell and pbc are ignored (the molecule is treated as isolated).
    properties : sequence of str
        Any of :data:`PROPERTIES`.
    basis : str
        A PySCF basis name (spherical d functions, PySCF's default).
    method : str
        Only ``"RHF"``.
    charge : int
        Total charge; the electron count must be even (closed shell, singlet).
    conv_tol : float
        SCF energy convergence threshold (Hartree); CPHF uses ``1e-9``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``energy`` (always, shape ``()``) plus each requested property with the shape and unit of
        the module table (float64, in the frame of ``atoms.positions``).
    """
    props = _check_request(properties, method)
    pyscf, gto, scf, pol_rhf = _import_pyscf()
    if "nmr_shielding" in props and _pyscf_version(pyscf) >= (2, 5):
        raise _error(f"nmr_shielding is not available with PySCF {pyscf.__version__}", _NMR_HINT)
    symbols = atoms.get_chemical_symbols()
    nelec = int(sum(atoms.get_atomic_numbers())) - charge
    if nelec % 2:
        raise _error(f"{atoms.get_chemical_formula()} with charge {charge} has {nelec} electrons",
                     "only closed-shell singlets (an even electron count) can be labelled")
    mol = gto.M(atom=[(s, tuple(map(float, p))) for s, p in zip(symbols, atoms.positions)],
                unit="Angstrom", basis=basis, charge=charge, spin=0, symmetry=False, verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = conv_tol
    mf.kernel()
    if not mf.converged:
        raise _error(f"RHF did not converge for {atoms.get_chemical_formula()}")
    out = {"energy": np.asarray(mf.e_tot, dtype=np.float64)}
    if "dipole" in props:
        out["dipole"] = np.asarray(mf.dip_moment(unit="AU", verbose=0), dtype=np.float64)  # [3]
    if "polarizability" in props or "hyperpolarizability" in props:
        pol = pol_rhf.Polarizability(mf)
        pol.max_cycle_cphf = 60
        if "polarizability" in props:
            out["polarizability"] = np.asarray(pol.polarizability(), dtype=np.float64)  # [3, 3]
        if "hyperpolarizability" in props:
            beta = np.asarray(pol.hyper_polarizability(), dtype=np.float64)  # [3, 3, 3]
            out["hyperpolarizability"] = beta
    if "nmr_shielding" in props:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pyscf.prop import nmr
        out["nmr_shielding"] = np.asarray(nmr.RHF(mf).kernel(), dtype=np.float64)  # [n, 3, 3]
    return out


def attach_labels(atoms, labels: dict[str, np.ndarray], name: str | None = None,
                  lot: str = "RHF/6-31G*"):
    """Return a copy of ``atoms`` carrying ``labels`` in the extxyz storage convention.

    Per-structure tensors go to ``info`` flattened row-major (``mu`` 3, ``polarizability`` 9,
    ``hyperpolarizability`` 27); per-atom tensors to ``arrays`` as float64 ``[n_atoms, 9]``;
    ``scf_energy`` (Hartree) and ``level_of_theory`` to ``info``.  No cell, ``pbc`` False.
    The dipole and the energy are stored as ``mu`` and ``scf_energy`` (see :data:`STORAGE_KEYS`)
    because ASE's extxyz reader moves ``info`` keys named ``dipole`` and ``energy`` into a
    SinglePointCalculator, where ASE would also read them as e*Angstrom and eV.
    """
    out = atoms.copy()
    out.calc = None
    out.set_cell(np.zeros((3, 3)))
    out.pbc = False
    for key in list(out.info):
        if key in PROPERTIES or key in STORAGE_KEYS.values() or key in ("energy", "level_of_theory"):
            del out.info[key]
    if name is not None:
        out.info["name"] = name
    out.info["level_of_theory"] = lot
    for key, value in labels.items():
        value = np.asarray(value, dtype=np.float64)
        stored = STORAGE_KEYS.get(key, key)
        if key == "energy":
            out.info[stored] = float(value)
        elif key in PER_ATOM:
            out.arrays[stored] = np.ascontiguousarray(value.reshape(len(out), 9))  # [n_atoms, 9]
        else:
            out.info[stored] = value.reshape(-1)  # row-major flattening
    return out


def label_structures(structures: Iterable, properties: Sequence[str] = PROPERTIES,
                     basis: str = "6-31G*", method: str = "RHF",
                     progress: Callable[[int, object], None] | None = None) -> list:
    """Label every structure; return copies with the labels attached (see :func:`attach_labels`).

    ``progress(k, labelled_atoms)`` is called after each structure (e.g. to append it to a file),
    so that a long run leaves a usable partial result.
    """
    _check_request(properties, method)
    lot = level_of_theory(method, basis)
    result = []
    for k, atoms in enumerate(structures):
        labels = label_molecule(atoms, properties, basis=basis, method=method,
                                charge=int(atoms.info.get("charge", 0)))
        labelled = attach_labels(atoms, labels, lot=lot)
        result.append(labelled)
        if progress is not None:
            progress(k, labelled)
    return result
