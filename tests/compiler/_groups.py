"""Independent references for the compiler tests: brute-force projectors and group characters."""
from __future__ import annotations

import itertools
import random
import string

import numpy as np

from tsym.compiler.symmetry import SignedPermutationGroup


def random_group(rng: random.Random, n: int, max_gens: int = 3) -> tuple[str, list[str]]:
    """A random spec body: indices and symmetry equations (strings), with random signs."""
    idx = string.ascii_lowercase[8 : 8 + n]
    eqs = []
    for _ in range(rng.randint(0, max_gens)):
        perm = list(idx)
        rng.shuffle(perm)
        sign = "-" if rng.random() < 0.25 else ""
        eqs.append(f"{idx} = {sign}{''.join(perm)}")
    return idx, eqs


def projector(group: SignedPermutationGroup) -> np.ndarray:
    """``[3^n, 3^n]`` group average of the signed slot permutations (brute force, small n)."""
    n = group.n
    size = 3**n
    tuples = list(itertools.product(range(3), repeat=n))
    index = {t: k for k, t in enumerate(tuples)}
    p = np.zeros((size, size))
    elements = group.elements()
    for perm, sign in elements:
        for k, t in enumerate(tuples):
            # (g T)[t] = sign * T[t o perm]
            p[k, index[tuple(t[perm[i]] for i in range(n))]] += sign
    return p / len(elements)


def trace_matrix(n: int, pairs) -> np.ndarray:
    """Rows: the contractions over each pair, for every value of the other indices."""
    rows = []
    tuples = list(itertools.product(range(3), repeat=n))
    index = {t: k for k, t in enumerate(tuples)}
    for p, q in pairs:
        others = [k for k in range(n) if k not in (p, q)]
        for rest in itertools.product(range(3), repeat=n - 2):
            row = np.zeros(3**n)
            for i in range(3):
                t = [0] * n
                for k, v in zip(others, rest):
                    t[k] = v
                t[p] = t[q] = i
                row[index[tuple(t)]] += 1
            rows.append(row)
    return np.array(rows).reshape(-1, 3**n)


def character_multiplicities(group: SignedPermutationGroup) -> dict[int, int]:
    """SO(3) multiplicities from the character formula over the group elements.

    chi(theta) = 1/|G| sum_g sign(g) prod_{cycles c of g} (z^|c| + 1 + z^-|c|),  z = e^{i theta};
    the coefficient of z^w is the dimension of the weight-w space, mult(l) = c_l - c_(l+1).
    """
    n = group.n
    coeff = {}
    elements = group.elements()
    for perm, sign in elements:
        seen = [False] * n
        poly = {0: 1}
        for start in range(n):
            if seen[start]:
                continue
            length = 0
            k = start
            while not seen[k]:
                seen[k] = True
                k = perm[k]
                length += 1
            new = {}
            for w, c in poly.items():
                for dw in (-length, 0, length):
                    new[w + dw] = new.get(w + dw, 0) + c
            poly = new
        for w, c in poly.items():
            coeff[w] = coeff.get(w, 0) + sign * c
    mults = {}
    for l in range(n + 1):
        m = (coeff.get(l, 0) - coeff.get(l + 1, 0))
        assert m % len(elements) == 0
        if m:
            mults[l] = m // len(elements)
    return mults


def numeric_rank(m: np.ndarray, tol: float = 1e-9) -> int:
    if m.size == 0:
        return 0
    s = np.linalg.svd(m, compute_uv=False)
    return int((s > tol * max(1.0, s.max())).sum())


def group_of(indices: str, equations: list[str]) -> SignedPermutationGroup:
    """The group of equations written as in a spec, e.g. ``["ij = -ji"]``."""
    from tsym.compiler.symmetry import generators_from_terms

    gens = []
    for eq in equations:
        terms = []
        for term in eq.replace(" ", "").split("="):
            terms.append((-1, term[1:]) if term.startswith("-") else (1, term))
        gens += generators_from_terms(indices, terms)
    return SignedPermutationGroup(len(indices), gens)
