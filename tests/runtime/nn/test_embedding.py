"""Tests of the XPaiNN element and edge embeddings (tsym.runtime.nn.embedding)."""
from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tsym.compiler.errors import TsymError
from tsym.runtime.nn.embedding import (
    DEFAULT_MAX_Z, BackboneConfigError, BesselBasis, CutoffEnvelope, EdgeEmbedding,
    ElementEmbedding, UnknownElementError, load_qc_table, qc_analogue, sh_irreps_for,
)

from ...conftest import SHARED_DATA_SKIP, default_dtype, shared_data_dir

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "make_qc_embedding.py"

# STO-3G (Hehre, Stewart, Pople 1969) as published: (exponent, coefficient) of normalised primitives.
STO3G_H_1S = [(3.42525091, 0.15432897), (0.62391373, 0.53532814), (0.16885540, 0.44463454)]
STO3G_C_2P = [(2.9412494, 0.15591627), (0.6834831, 0.60768372), (0.2222899, 0.39195739)]


def _prim_overlap(a: float, b: float, l: int) -> float:
    """<g_a | g_b> of two normalised same-centre Gaussians r^l exp(-a r^2) Y_lm (same l, m)."""
    return (2.0 * math.sqrt(a * b) / (a + b)) ** (l + 1.5)


def _projection(aux_exp: np.ndarray, shell: list[tuple[float, float]], l: int) -> np.ndarray:
    """Overlaps of normalised auxiliary primitives with the normalised contracted ``shell``."""
    exps, coefs = np.array(shell).T
    pairs = itertools.product(zip(exps, coefs), repeat=2)
    norm2 = sum(ci * cj * _prim_overlap(a, b, l) for (a, ci), (b, cj) in pairs)
    raw = [sum(c * _prim_overlap(x, a, l) for a, c in zip(exps, coefs)) for x in aux_exp]
    return np.array(raw) / math.sqrt(norm2)


def test_qc_table_shape_and_aux_set():
    t = load_qc_table()
    assert t.table.shape == (54, 28) and t.max_z == 53 and t.basis == "sto-3g"
    assert np.all(t.table[0] == 0.0) and np.all(np.isfinite(t.table))
    assert np.all(np.abs(t.table[1:]).sum(axis=1) > 0)  # every element has a non-zero vector
    assert list(np.bincount(t.aux_l)) == [16, 8, 4]
    for l, ratio in ((0, 2.0), (1, 4.0), (2, 4.0)):  # even-tempered, documented ratios
        e = t.aux_exponents[t.aux_l == l]
        np.testing.assert_allclose(e[:-1] / e[1:], ratio, rtol=1e-14)
    np.testing.assert_allclose(t.aux_exponents[[0, 16, 24]], [128.0, 32.0, 4.0])
    assert not t.table.flags.writeable


def test_qc_rows_match_analytic_overlaps():
    """H (1s only) and the p part of C, derived from the published STO-3G numbers."""
    t = load_qc_table()
    s, p = t.aux_l == 0, t.aux_l == 1
    np.testing.assert_allclose(t.table[1, s], _projection(t.aux_exponents[s], STO3G_H_1S, 0), rtol=1e-7)
    np.testing.assert_allclose(t.table[1, ~s], 0.0, atol=1e-14)  # H has no p, d orbitals
    np.testing.assert_allclose(t.table[6, p], _projection(t.aux_exponents[p], STO3G_C_2P, 1), rtol=1e-7)
    np.testing.assert_allclose(t.table[6, t.aux_l == 2], 0.0, atol=1e-14)  # C has no d orbitals


def test_qc_table_reproduced_by_script():
    pytest.importorskip("pyscf")
    spec = importlib.util.spec_from_file_location("make_qc_embedding", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    t = load_qc_table()
    np.testing.assert_array_equal(script.aux_exponents()[1], t.aux_exponents)
    for z in (8, 26):
        np.testing.assert_allclose(script.element_row(z), t.table[z], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["qc", "onehot"])
def test_element_embedding(kind):
    emb = ElementEmbedding(12, kind, max_z=60)
    z = torch.tensor([1, 6, 8, 6, 20, 57])
    x = emb(z)
    assert x.shape == (6, 12) and str(emb.irreps_out["scalars"]) == "12x0e"
    torch.testing.assert_close(x[1], x[3], rtol=0, atol=0)
    assert not torch.allclose(x[1], x[2])
    with pytest.raises(UnknownElementError, match=r"^ElementEmbedding\('" + kind + r"'\): atomic number 0"):
        emb(torch.tensor([1, 0]))
    with pytest.raises(UnknownElementError, match=r"atomic number 99 is outside 1\.\.60"):
        emb(torch.tensor([99]))


def test_element_embedding_config_errors():
    with pytest.raises(BackboneConfigError, match=r"^ElementEmbedding: unknown embedding 'qm'"):
        ElementEmbedding(8, "qm")
    with pytest.raises(BackboneConfigError, match=r"^ElementEmbedding: max_z=119 is outside 1\.\.118"):
        ElementEmbedding(8, "qc", max_z=119)
    assert ElementEmbedding(8, "onehot", max_z=100).max_z == 100
    assert ElementEmbedding(8, "qc").max_z == ElementEmbedding(8, "onehot").max_z == DEFAULT_MAX_Z == 118
    assert issubclass(BackboneConfigError, TsymError) and issubclass(UnknownElementError, TsymError)


# the nearest lighter element of the same group that STO-3G covers (periodic-table facts)
GROUP_RELATIVES = {
    "Xe": "Kr", "Cs": "Rb", "Ba": "Sr", "Hf": "Zr", "Ta": "Nb", "W": "Mo", "Re": "Tc", "Os": "Ru",
    "Ir": "Rh", "Pt": "Pd", "Au": "Ag", "Hg": "Cd", "Tl": "In", "Pb": "Sn", "Bi": "Sb", "Po": "Te",
    "At": "I", "Rn": "Kr", "Fr": "Rb", "Ra": "Sr", "Rf": "Zr", "Cn": "Cd", "Og": "Kr",
    # the f block has no relative in the table: yttrium (group 3, trivalent rare-earth chemistry)
    "La": "Y", "Ce": "Y", "Gd": "Y", "Tm": "Y", "Lu": "Y", "Ac": "Y", "Th": "Y", "U": "Y",
    "Pu": "Y", "Lr": "Y",
}


def test_qc_analogue_is_the_group_relative():
    from ase.data import atomic_numbers

    for element, relative in GROUP_RELATIVES.items():
        assert qc_analogue(atomic_numbers[element]) == atomic_numbers[relative], element
    assert [qc_analogue(z) for z in range(1, 54)] == list(range(1, 54))
    assert all(1 <= qc_analogue(z) <= 53 for z in range(1, 119))


def test_qc_embedding_beyond_the_table():
    """Z <= 53: the learned map of the element's own STO-3G vector (as before the fallback);
    Z > 53: the map of its relative's vector plus a learned row of its own, zero at first."""
    torch.manual_seed(0)
    emb = ElementEmbedding(8, "qc").double()
    table = torch.tensor(load_qc_table().table)  # [54, 28] float64
    z = torch.arange(1, 119)
    rows = [qc_analogue(int(k)) for k in z]
    # the buffer was built in the default dtype (float32), then cast: the table rounded once
    torch.testing.assert_close(emb.qc_table[1:], table[rows].float().double(), rtol=0, atol=0)
    x = emb(z)  # [118, 8]
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, emb.linear(emb.qc_table[rows]), rtol=0, atol=0)
    sn, pb = 50, 82
    assert tuple(emb.extra.shape) == (118 - 53, 8)
    (emb(torch.tensor([pb, pb, 6])).sum()).backward()
    grad = emb.extra.grad  # only Pb's row is used
    assert grad[pb - 54].abs().sum() > 0 and grad.abs().sum() == grad[pb - 54].abs().sum()
    with torch.no_grad():
        emb.extra.normal_()
    after = emb(torch.tensor([sn, pb, 8]))
    torch.testing.assert_close(after[0], x[sn - 1], rtol=0, atol=0)  # covered elements unchanged
    torch.testing.assert_close(after[2], x[7], rtol=0, atol=0)
    assert not torch.allclose(after[1], after[0])  # trained, Pb and Sn differ


def test_bessel_basis(dtype, tol):
    c, n = 5.0, 6
    with default_dtype(dtype):  # built in the dtype, so the initial frequencies are exact there
        basis = BesselBasis(n, c)
    r = np.array([0.0, 0.3, 1.7, 4.9])
    got = basis(torch.tensor(r, dtype=dtype)).detach().numpy()
    k = np.arange(1, n + 1) * np.pi / c
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.sqrt(2 / c) * np.sin(k * r[:, None]) / r[:, None]
    want[0] = np.sqrt(2 / c) * k  # the limit r -> 0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert basis.freqs.requires_grad


@pytest.mark.parametrize("kind", ["cosine", "polynomial"])
def test_cutoff_envelope(kind):
    c = 5.0
    env = CutoffEnvelope(c, kind)
    r = torch.linspace(0.0, 6.0, 601, dtype=torch.float64, requires_grad=True)
    f = env(r).squeeze(-1)
    assert f.shape == (601,) and f[0].item() == pytest.approx(1.0, abs=1e-15)
    assert torch.all(f[r >= c] == 0.0) and torch.all(f.diff() <= 1e-15)  # decreasing to zero
    (grad,) = torch.autograd.grad(f.sum(), r)
    assert abs(grad[500].item()) < 1e-12  # slope vanishes at r = c
    near = env(torch.tensor([c - 1e-6], dtype=torch.float64)).item()
    assert 0.0 < near < 1e-11
    with pytest.raises(BackboneConfigError, match=r"^CutoffEnvelope: unknown cutoff_fn 'step'"):
        CutoffEnvelope(c, "step")


def test_edge_embedding_matches_e3nn():
    emb = EdgeEmbedding("4x0e+2x2e", num_basis=5, cutoff=3.0).double()
    assert {k: str(v) for k, v in emb.irreps_out.items()} == {
        "edge_sh": "1x0e+1x2e", "edge_radial": "5x0e", "edge_envelope": "1x0e"}
    vec = torch.tensor([[1.0, 0.0, 0.0], [0.3, -1.2, 0.5], [0.0, 0.0, 4.0]], dtype=torch.float64)
    sh, radial, envelope = emb(vec)
    x, y, z = (vec / vec.norm(dim=1, keepdim=True)).T
    # component-normalised l=2 in e3nn order: sqrt(15) xz, sqrt(15) xy, sqrt(5)(y^2 - (x^2+z^2)/2), ...
    want_l2 = torch.stack([math.sqrt(15) * x * z, math.sqrt(15) * x * y,
                           math.sqrt(5) * (y**2 - 0.5 * (x**2 + z**2)), math.sqrt(15) * y * z,
                           math.sqrt(15) / 2 * (z**2 - x**2)], dim=1)
    torch.testing.assert_close(sh[:, 0], torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(sh[:, 1:], want_l2, rtol=1e-12, atol=1e-12)
    assert radial.shape == (3, 5) and envelope.shape == (3, 1) and envelope[2].item() == 0.0
    assert str(sh_irreps_for("8x0e+4x1o+2x3o")) == "1x0e+1x1o+1x3o"


def _shared_elements(root) -> dict[str, set[int]]:
    """The atomic numbers of every shared data set, read without tsym's converters: atom lines of
    xyz files, ``"element": "Xx"`` of the pymatgen structures in JSON, CSV ``formula`` columns,
    ASE databases."""
    import re

    from ase.data import atomic_numbers

    found: dict[str, set[int]] = {}
    for path in sorted(root.rglob("*")):
        zs: set[int] = set()
        if path.suffix in (".xyz", ".extxyz"):
            lines = path.read_text().splitlines()
            p = 0
            while p < len(lines):
                n = int(lines[p].split()[0]) if lines[p].strip() else 0
                zs |= {atomic_numbers[line.split()[0]] for line in lines[p + 2:p + 2 + n]}
                p += n + 2
        elif path.suffix == ".json":
            zs = {atomic_numbers[s] for s in re.findall(r'element\W+([A-Z][a-z]?)\b', path.read_text())}
        elif path.suffix == ".csv":
            import csv

            lines = [ln for ln in path.read_text().splitlines(True) if not ln.startswith("#")]
            rows = list(csv.DictReader(lines))
            if rows and "formula" in rows[0]:
                zs = {atomic_numbers[s] for r in rows for s in re.findall(r"[A-Z][a-z]?", r["formula"])}
        elif path.suffix == ".db":
            import ase.db

            with ase.db.connect(str(path)) as db:
                zs = {int(z) for row in db.select() for z in row.numbers}
        if zs:
            found[str(path.relative_to(root))] = zs
    return found


def test_default_embedding_covers_every_shared_set():
    root = shared_data_dir()
    if root is None:
        pytest.skip(SHARED_DATA_SKIP)
    found = _shared_elements(root)
    assert len(found) >= 11  # every set but the zipped magres files (H, C, N, O, S; also in CSD-S546.xyz)
    every = sorted(set().union(*found.values()))
    assert every[-1] > 53  # Pu (94) in elastic_matten: beyond the STO-3G table
    for kind in ("qc", "onehot"):
        emb = ElementEmbedding(8, kind)
        assert every[-1] <= emb.max_z
        assert torch.isfinite(emb(torch.tensor(every))).all()
