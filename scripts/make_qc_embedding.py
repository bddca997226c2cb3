"""Make the XPaiNN quantum-chemistry element embedding table shipped in ``runtime/nn/assets/``.

Each element's minimal-basis atomic orbitals (PySCF's STO-3G, elements H..I, Z = 1..53) are
projected, by one-electron overlap integrals ``<aux_k | ao_mu>`` between functions on the same
centre, onto an even-tempered auxiliary Gaussian set of 16 s, 8 p and 4 d shells, and summed over
the element's orbitals::

    e_Z[k] = sum_mu <aux_k | ao_mu>          (one value per auxiliary shell k)

This is the embedding of XPaiNN (Chen et al., J. Chem. Theory Comput. 2024, XequiNet), which used
the GFN2-xTB basis; GFN2-xTB is not shipped by PySCF, so tsym uses STO-3G.  For functions on one
centre only the same (l, m) overlap, and the value is the same for every m of a shell (checked
below), so one number per auxiliary shell is kept.  Row 0 of the table is zeros (no element).

The auxiliary exponents (bohr^-2) are ``alpha0 / beta**k``, k = 0..n-1:

    s: alpha0 = 128, beta = 2, n = 16     (128 ... 2**-8)
    p: alpha0 = 32,  beta = 4, n = 8      (32 ... 2**-9)
    d: alpha0 = 4,   beta = 4, n = 4      (4 ... 2**-4)

Run once (PySCF is needed here only, never at run time)::

    python scripts/make_qc_embedding.py            # writes runtime/nn/assets/xpainn_qc_embedding.npz

The ``.npz`` holds ``table`` [max_z + 1, 28] float64, ``aux_l`` [28] int64, ``aux_exponents`` [28]
float64, ``basis`` (str), ``pyscf_version`` (str).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

BASIS = "sto-3g"
MAX_Z = 53  # STO-3G in PySCF covers H..I
AUX_SHELLS = ((0, 128.0, 2.0, 16), (1, 32.0, 4.0, 8), (2, 4.0, 4.0, 4))  # (l, alpha0, beta, n)
OUTPUT = Path(__file__).resolve().parents[1] / "runtime" / "nn" / "assets" / "xpainn_qc_embedding.npz"


def aux_exponents() -> tuple[np.ndarray, np.ndarray]:
    """The auxiliary shells as ``(aux_l [28] int64, aux_exponents [28] float64)``, s then p then d."""
    ls, exps = [], []
    for l, alpha0, beta, n in AUX_SHELLS:
        ls += [l] * n
        exps += [alpha0 / beta**k for k in range(n)]
    return np.asarray(ls, dtype=np.int64), np.asarray(exps, dtype=np.float64)


def element_row(z: int, basis: str = BASIS) -> np.ndarray:
    """The embedding vector of element ``z``: [28] float64, one value per auxiliary shell."""
    from pyscf import gto
    from pyscf.data.elements import ELEMENTS

    aux_l, aux_exp = aux_exponents()
    aux_basis = [[int(l), [float(a), 1.0]] for l, a in zip(aux_l, aux_exp)]
    aux = gto.M(atom="X 0 0 0", basis={"X": aux_basis}, verbose=0)
    mol = gto.M(atom=f"{ELEMENTS[z]} 0 0 0", basis=basis, spin=z % 2, verbose=0)
    ovlp = gto.intor_cross("int1e_ovlp", aux, mol)  # [n_aux_ao, n_elem_ao]
    summed = ovlp.sum(axis=1)  # [n_aux_ao]
    loc = aux.ao_loc_nr()
    for k in range(aux.nbas):  # every m of an auxiliary shell carries the same value
        block = summed[loc[k]:loc[k + 1]]
        if not np.allclose(block, block[0], rtol=0.0, atol=1e-12):
            raise RuntimeError(f"Z={z}: auxiliary shell {k} is not m-independent: {block}")
    return summed[loc[:-1]].copy()  # [28]


def make_table(max_z: int = MAX_Z, basis: str = BASIS) -> np.ndarray:
    """The full table: [max_z + 1, 28] float64, row 0 zeros."""
    rows = [np.zeros(sum(n for *_, n in AUX_SHELLS))]
    rows += [element_row(z, basis) for z in range(1, max_z + 1)]
    return np.stack(rows)


def main(argv: list[str] | None = None) -> None:
    import pyscf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    aux_l, aux_exp = aux_exponents()
    table = make_table()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.output, table=table, aux_l=aux_l, aux_exponents=aux_exp,
        basis=np.asarray(BASIS), pyscf_version=np.asarray(pyscf.__version__),
    )
    print(f"wrote {args.output}: table {table.shape}, basis {BASIS}, pyscf {pyscf.__version__}")


if __name__ == "__main__":
    main()
