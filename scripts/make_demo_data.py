"""Make ``runtime/data/assets/demo_molecules.extxyz``: RHF/6-31G* tensors for small G2 molecules.

Structures: the closed-shell neutral singlets of ASE's G2 collection with at most
``--max-heavy`` heavy atoms from the allowed elements, each once at the G2 geometry and
``--copies`` times with seeded Gaussian displacements (sigma ``--sigma`` Angstrom, a copy is
redrawn if two atoms come closer than 0.7 Angstrom); every structure gets a seeded uniform random
rotation, so nothing is in standard orientation.  The molecules in ``EXCLUDE`` are dropped.  The structures are labelled round-robin (all
molecules once, then the first displaced copy of each, ...), appending each finished structure to
the output file, so an interrupted run leaves a usable, balanced partial set; a rerun resumes.

The labels need PySCF + pyscf-properties; NMR shielding needs PySCF 2.4 (see DEMO_DATA.md)::

    OMP_NUM_THREADS=1 nice -n 10 /tmp/nmrenv/bin/python scripts/make_demo_data.py \
        -o runtime/data/assets/demo_molecules.extxyz

``--check-beta`` instead compares the analytic polarizability and hyperpolarizability of one
molecule with central finite differences of the dipole in a field added to the core Hamiltonian.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _load_label():
    """Import runtime/data/label.py, standalone where tsym cannot be imported (the labelling env
    need not have torch): its one tsym import, ``LabelError``, then stands for a plain exception."""
    try:
        from tsym.runtime.data import label
        return label
    except ImportError:
        pass
    errors = types.ModuleType("tsym.runtime.errors")
    errors.LabelError = type("LabelError", (Exception,), {})
    for name in ("tsym", "tsym.runtime"):
        if sys.modules.get(name) is None:
            sys.modules[name] = types.ModuleType(name)
    sys.modules["tsym.runtime.errors"] = errors
    spec = importlib.util.spec_from_file_location("tsym_label", ROOT / "runtime" / "data" / "label.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# G2 molecules that pass the filter but whose RHF/6-31G* labels are unphysical; dropped after the
# random draws (so the other structures do not depend on this list).
EXCLUDE = {
    "H2": "6-31G* has only s functions on H: alpha perpendicular to the bond is exactly 0",
    "CH2_s1A1d": "singlet carbene: small gap, RHF proton shieldings of -17 to -56 ppm",
    "O3": "multireference: RHF oxygen shieldings of -7,000 to -56,000 ppm",
    "CH3ONO": "nitrite: RHF nitrogen/oxygen shieldings beyond -2,000 ppm",
}


def base_molecules(elements: set[str], max_heavy: int) -> list[str]:
    """G2 names of closed-shell neutral singlets with <= max_heavy heavy atoms from elements."""
    from ase.build import molecule
    from ase.collections import g2

    names = []
    for name in g2.names:
        atoms = molecule(name)
        symbols = atoms.get_chemical_symbols()
        heavy = [s for s in symbols if s != "H"]
        if len(atoms) < 2 or not set(symbols) <= elements or len(heavy) > max_heavy:
            continue
        if sum(atoms.get_atomic_numbers()) % 2 or np.any(atoms.get_initial_magnetic_moments()):
            continue
        names.append(name)
    return sorted(names)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniform proper rotation (QR of a Gaussian matrix with the sign fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q  # [3, 3]


def make_structures(names: list[str], copies: int, sigma: float, seed: int) -> list:
    """Round-robin list of rotated (and for copy >= 1, displaced) structures."""
    from ase.build import molecule

    rng = np.random.default_rng(seed)
    out = []
    for copy in range(copies + 1):
        for name in names:
            atoms = molecule(name)
            pos = atoms.positions - atoms.positions.mean(axis=0)  # [n_atoms, 3]
            if copy:
                while True:
                    trial = pos + rng.normal(scale=sigma, size=pos.shape)
                    d = np.linalg.norm(trial[:, None] - trial[None], axis=-1)
                    if np.min(d[np.triu_indices(len(trial), 1)]) >= 0.7:
                        break
                pos = trial
            atoms.positions = pos @ random_rotation(rng).T
            atoms.set_initial_magnetic_moments(None)
            atoms.info = {"name": name, "copy": copy}
            out.append(atoms)
    return out


def generate(args) -> None:
    from ase.io import read, write

    label = _load_label()
    elements = set(args.elements.split(","))
    names = base_molecules(elements, args.max_heavy)
    structures = [a for a in make_structures(names, args.copies, args.sigma, args.seed)
                  if a.info["name"] not in EXCLUDE]
    out = Path(args.output)
    done = len(read(out, index=":")) if out.exists() and out.stat().st_size else 0
    print(f"{len(names) - len(EXCLUDE)} molecules, {len(structures)} structures, {done} already done",
          flush=True)
    props = tuple(args.properties.split(","))
    lot = label.level_of_theory("RHF", args.basis)
    t_start = time.time()
    for k in range(done, len(structures)):
        atoms = structures[k]
        t0 = time.time()
        try:
            labels = label.label_molecule(atoms, props, basis=args.basis)
        except Exception as exc:  # keep going; the log names the failure
            print(f"{k} {atoms.info['name']} FAILED: {exc}", flush=True)
            continue
        labelled = label.attach_labels(atoms, labels, name=atoms.info["name"], lot=lot)
        write(out, labelled, format="extxyz", append=True)
        print(f"{k} {atoms.info['name']} copy={atoms.info['copy']} n={len(atoms)} "
              f"{time.time() - t0:.1f}s total={time.time() - t_start:.0f}s", flush=True)


def check_beta(args) -> None:
    """Analytic alpha/beta against central differences of the dipole in a finite field."""
    from ase.build import molecule

    label = _load_label()
    _, gto, scf, _ = label._import_pyscf()
    atoms = molecule(args.check_beta)
    atoms.positions = atoms.positions @ random_rotation(np.random.default_rng(1)).T
    ana = label.label_molecule(atoms, ("dipole", "polarizability", "hyperpolarizability"),
                               basis=args.basis, conv_tol=1e-13)
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
                unit="Angstrom", basis=args.basis, verbose=0)
    r_ao = mol.intor_symmetric("int1e_r", comp=3)  # [3, nao, nao]
    dm_prev = [None]

    def mu(field):
        mf = scf.RHF(mol)
        mf.conv_tol = 1e-13
        h = mf.get_hcore() + np.einsum("x,xij->ij", field, r_ao)  # electron energy +E.r
        mf.get_hcore = lambda *a, **k: h
        mf.kernel(dm0=dm_prev[0])
        dm_prev[0] = mf.make_rdm1()
        return np.asarray(mf.dip_moment(unit="AU", verbose=0))  # [3]

    h = args.field
    e = np.eye(3) * h
    mu0 = mu(np.zeros(3))
    alpha = np.zeros((3, 3))
    beta = np.zeros((3, 3, 3))
    for j in range(3):
        mp, mm = mu(e[j]), mu(-e[j])
        alpha[:, j] = (mp - mm) / (2 * h)
        beta[:, j, j] = (mp - 2 * mu0 + mm) / h**2
        for k in range(j + 1, 3):
            d = (mu(e[j] + e[k]) - mu(e[j] - e[k]) - mu(-e[j] + e[k]) + mu(-e[j] - e[k])) / (4 * h**2)
            beta[:, j, k] = beta[:, k, j] = d
    print(f"{args.check_beta} {args.basis} field step {h} a.u.")
    print("dipole analytic vs zero-field SCF  max|diff| =", np.abs(ana["dipole"] - mu0).max())
    print("alpha  max|analytic - FD| =", np.abs(ana["polarizability"] - alpha).max(),
          " max|alpha| =", np.abs(alpha).max())
    print("beta   max|analytic - FD| =", np.abs(ana["hyperpolarizability"] - beta).max(),
          " max|beta| =", np.abs(beta).max())
    print("beta   max|analytic + FD| =", np.abs(ana["hyperpolarizability"] + beta).max(),
          "(would be small if the sign were flipped)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--output", default=str(ROOT / "runtime/data/assets/demo_molecules.extxyz"))
    p.add_argument("--basis", default="6-31G*")
    p.add_argument("--elements", default="H,C,N,O,F")
    p.add_argument("--max-heavy", type=int, default=6)
    p.add_argument("--copies", type=int, default=5, help="displaced copies per molecule")
    p.add_argument("--sigma", type=float, default=0.05, help="displacement sigma, Angstrom")
    p.add_argument("--seed", type=int, default=20240607)
    p.add_argument("--properties", default="dipole,polarizability,hyperpolarizability,nmr_shielding")
    p.add_argument("--check-beta", metavar="G2NAME", help="finite-field check on one molecule")
    p.add_argument("--field", type=float, default=2e-3, help="finite-field step, a.u.")
    args = p.parse_args(argv)
    check_beta(args) if args.check_beta else generate(args)


if __name__ == "__main__":
    sys.exit(main())
