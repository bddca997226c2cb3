"""The equivariance helpers pass on equivariant toy functions and fail on broken ones."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from tsym.runtime.equivariance import (assert_equivariant, random_rotation, rotate_atoms,
                                  rotate_cartesian)


def structures():
    crystal = bulk("NaCl", "rocksalt", a=5.6) * (1, 1, 2)
    crystal.rattle(0.1, seed=2)
    return [molecule("CH3CH2OH"), molecule("H2O"), crystal]


def pair_tensor(atoms) -> np.ndarray:
    """sum over ordered pairs of outer(r_j - r_i, r_j - r_i): a polar order-2 invariant of pairs."""
    rel = atoms.positions[None, :, :] - atoms.positions[:, None, :]  # [n, n, 3]
    return np.einsum("ija,ijb->ab", rel, rel)  # [3, 3]


def toy(structs) -> dict[str, np.ndarray]:
    """Equivariant outputs built from relative positions only."""
    out = {"pairs": [], "to_centroid": [], "twist": [], "spread": []}
    for atoms in structs:
        rel = atoms.positions[None, :, :] - atoms.positions[:, None, :]  # [i, j, 3] = r_j - r_i
        dist = np.linalg.norm(rel, axis=-1, keepdims=True)  # [i, j, 1]
        out["pairs"].append(pair_tensor(atoms))
        out["to_centroid"].append(rel.sum(axis=1))  # [n, 3] per atom, polar
        # (sum_j |r_ij| r_ij) x (sum_k r_ik): a cross product of polar vectors is axial, per atom
        out["twist"].append(np.cross((dist * rel).sum(axis=1), rel.sum(axis=1)))
        out["spread"].append([np.trace(pair_tensor(atoms))])  # order 0
    return {"pairs": np.stack(out["pairs"]), "to_centroid": np.concatenate(out["to_centroid"]),
            "twist": np.concatenate(out["twist"]), "spread": np.concatenate(out["spread"])}


ORDERS = {"pairs": 2, "to_centroid": 1, "twist": 1, "spread": 0}


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_random_rotation(dtype, atol):
    eye = torch.eye(3, dtype=dtype)
    for proper in (True, False):
        rot = random_rotation(dtype, proper=proper)
        assert rot.dtype == dtype
        torch.testing.assert_close(rot @ rot.T, eye, atol=atol, rtol=0)
        assert abs(float(torch.linalg.det(rot)) - (1.0 if proper else -1.0)) < 10 * atol
    a = random_rotation(dtype, torch.Generator().manual_seed(5))
    b = random_rotation(dtype, torch.Generator().manual_seed(5))
    c = random_rotation(dtype, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a @ a.T, eye, atol=atol, rtol=0)


def test_rotate_atoms_returns_a_rotated_copy():
    crystal = structures()[2]
    before = crystal.positions.copy()
    rot = random_rotation(torch.float64, torch.Generator().manual_seed(1), proper=False)
    turned = rotate_atoms(crystal, rot)
    assert np.array_equal(crystal.positions, before)
    r = rot.numpy()
    np.testing.assert_allclose(turned.positions, before @ r.T, atol=1e-12)
    np.testing.assert_allclose(np.array(turned.cell), np.array(crystal.cell) @ r.T, atol=1e-12)
    np.testing.assert_allclose(turned.get_all_distances(mic=True),
                               crystal.get_all_distances(mic=True), atol=1e-10)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_rotate_cartesian_against_matrix_formulas(dtype, atol):
    gen = torch.Generator().manual_seed(0)
    rot = random_rotation(dtype, gen, proper=False)
    vec = torch.randn(5, 3, generator=gen, dtype=torch.float64).to(dtype)
    mat = torch.randn(5, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(rotate_cartesian(vec, rot, order=1), vec @ rot.T, atol=atol, rtol=0)
    torch.testing.assert_close(rotate_cartesian(vec, rot, axial=True, order=1), -(vec @ rot.T),
                               atol=atol, rtol=0)
    torch.testing.assert_close(rotate_cartesian(mat, rot, order=2), rot @ mat @ rot.T,
                               atol=atol, rtol=0)
    t3 = torch.randn(3, 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    expected = torch.einsum("ai,bj,ck,ijk->abc", rot, rot, rot, t3)
    torch.testing.assert_close(rotate_cartesian(t3, rot), expected, atol=atol, rtol=0)
    as_numpy = rotate_cartesian(t3.numpy(), rot.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, expected.numpy(), atol=atol)
    with pytest.raises(ValueError, match="trailing Cartesian indices"):
        rotate_cartesian(torch.zeros(3, 2), rot)


def test_passes_on_equivariant_functions():
    assert_equivariant(toy, structures(), ORDERS, axial={"twist": True}, atol=1e-8, rtol=1e-10)


def test_passes_on_torch_outputs_in_float32():
    def as_torch(structs):
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in toy(structs).items()}
    assert_equivariant(as_torch, structures(), ORDERS, axial={"twist": True},
                       atol=1e-3, rtol=1e-5)


def test_fails_on_axial_declared_polar():
    with pytest.raises(AssertionError, match=r"^output 'twist' \(order 1, polar\) is not "
                                             r"equivariant: max error .*improper rotation"):
        assert_equivariant(toy, structures(), ORDERS, atol=1e-8, rtol=1e-10)
    # ...but it is fine when parity is not checked
    assert_equivariant(toy, structures(), ORDERS, atol=1e-8, rtol=1e-10, parity=False)


def test_fails_on_absolute_positions():
    def absolute(structs):
        return {"pairs": np.stack([a.positions.T @ a.positions for a in structs])}
    with pytest.raises(AssertionError) as info:
        assert_equivariant(absolute, structures(), {"pairs": 2}, atol=1e-8, rtol=1e-10)
    message = str(info.value)
    assert message.startswith("output 'pairs' (order 2, polar) is not equivariant: max error")
    assert "translation (max error" in message and "proper rotation (max error" not in message


def test_fails_on_swapped_axes():
    swap = np.eye(3)[[1, 0, 2]]

    def swapped(structs):
        return {"pairs": np.stack([swap @ pair_tensor(a) @ swap.T for a in structs])}
    with pytest.raises(AssertionError, match=r"^output 'pairs' .*fails under: proper rotation "
                                             r"\+ translation \+ permutation"):
        assert_equivariant(swapped, structures(), {"pairs": 2}, atol=1e-8, rtol=1e-10)


def test_fails_on_rows_that_ignore_the_permutation():
    def from_first_atom(structs):  # r_i - r_0: rotation and translation fine, permutation not
        return {"v": np.concatenate([a.positions - a.positions[0] for a in structs])}
    with pytest.raises(AssertionError) as info:
        assert_equivariant(from_first_atom, structures(), {"v": 1}, atol=1e-8, rtol=1e-10)
    message = str(info.value)
    assert "atom permutation (max error" in message
    assert "; translation (" not in message and "; proper rotation (" not in message


def test_usage_errors():
    with pytest.raises(ValueError, match="returned no output 'missing'"):
        assert_equivariant(toy, structures(), {"missing": 1})
    one_atom = [bulk("Cu"), bulk("Cu")]  # 2 atoms in 2 structures: rows are ambiguous

    def per_atom(structs):
        return {"v": np.zeros((2, 3))}
    with pytest.raises(ValueError, match="pass atom_level"):
        assert_equivariant(per_atom, one_atom, {"v": 1})
    assert_equivariant(per_atom, one_atom, {"v": 1}, atom_level={"v": True})


def _in_float32(fn):
    """``fn`` computed from float32-rounded positions, its outputs rounded to float32."""
    def rounded(structs):
        moved = []
        for atoms in structs:
            copy = atoms.copy()
            copy.positions = atoms.positions.astype(np.float32).astype(np.float64)
            moved.append(copy)
        return {k: v.astype(np.float32) for k, v in fn(moved).items()}
    return rounded


def test_reference_twin_allows_measured_rounding_only():
    """A float32 version of an equivariant function fails a float64 atol on its own, passes with
    its float64 twin as reference, and a broken twin is named."""
    scale = {k: float(np.abs(v).max()) for k, v in toy(structures()).items()}

    def scaled(fn):
        return lambda s: {k: np.asarray(v, np.float64) / scale[k] for k, v in fn(s).items()}
    f32, f64 = scaled(_in_float32(toy)), scaled(toy)
    axial = {"twist": True}
    with pytest.raises(AssertionError):
        assert_equivariant(f32, structures(), ORDERS, axial, atol=1e-12, rtol=0)
    assert_equivariant(f32, structures(), ORDERS, axial, atol=1e-12, rtol=0, reference=f64)

    def broken(s):
        out = f64(s)
        out["pairs"] = out["pairs"] + np.eye(3)[0]  # a fixed direction: not equivariant
        return out
    with pytest.raises(AssertionError, match="reference twin"):
        assert_equivariant(f32, structures(), ORDERS, axial, atol=1e-12, rtol=0,
                           reference=broken)
