"""Labelled extxyz: round trips, every kind of bad record, skip counts, Voigt maps, splits, graphs.

Every file is written here with ASE (tmp_path).  Expected values are written by hand: Voigt maps
from the IEEE pairs (xx, yy, zz, yz, xz, xy), symmetry deviations from ``T = S + A`` (a symmetric
plus an antisymmetric part, so ``|T - P(T)| / |T| = |A| / |T|``).  Label values are multiples of
1/8 so that ASE's 8-decimal per-atom columns write them exactly.
"""
from __future__ import annotations

import io
import json
import re

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from tsym.compiler import compile_text
from tsym.runtime.errors import DataError, LabelSpecError
from tsym.runtime import keys
from tsym.runtime.data import (VOIGT_PAIRS, LabelSpec, collate_records, load_split, read_dataset,
                               save_split, split, tensor3_to_voigt, tensor4_to_voigt,
                               voigt_to_tensor3, voigt_to_tensor4)

EPS = LabelSpec("dielectric", "eps")
BECS = LabelSpec("born_charges", "becs", level="atom")


@pytest.fixture(scope="module")
def plans():
    text = ("tensor dielectric { indices ij; symmetry ij = ji }\n"
            "tensor born_charges { indices ij; level atom }\n"
            "tensor elastic { indices ijkl; symmetry ijkl = jikl = ijlk = klij }\n")
    return {p.name: p for p in compile_text(text)}


def water(shift=0.0) -> Atoms:
    return Atoms("OH2", positions=[[0, 0, shift], [0.75, 0.5, shift], [-0.75, 0.5, shift]])


def labelled(k: int) -> Atoms:
    """A molecule with a symmetric ``eps`` (info) and per-atom ``becs`` (arrays), k-dependent."""
    atoms = water(0.125 * k)
    eps = np.array([[2, 0.25, 0], [0.25, 3, 0.5], [0, 0.5, 4]]) + k
    atoms.info["eps"] = eps.reshape(9)
    atoms.arrays["becs"] = (np.arange(27).reshape(3, 9) + k) / 8.0
    return atoms


def write(path, frames) -> str:
    ase.io.write(path, frames, format="extxyz")
    return str(path)


# --------------------------------------------------------------------------------- round trips
def test_round_trip_structure_and_atom_labels(tmp_path, plans):
    frames = [labelled(k) for k in range(3)]
    path = write(tmp_path / "ok.extxyz", frames)
    ds = read_dataset(path, [EPS, BECS], plans)
    assert len(ds) == 3 and ds.report.n_kept == 3 and ds.report.skipped == {}
    for k, rec in enumerate(ds):
        assert rec.index == k
        assert rec.labels["dielectric"].shape == (3, 3)
        assert rec.labels["dielectric"].dtype == np.float64
        np.testing.assert_array_equal(rec.labels["dielectric"],
                                      frames[k].info["eps"].reshape(3, 3))
        np.testing.assert_array_equal(rec.labels["born_charges"],
                                      frames[k].arrays["becs"].reshape(3, 3, 3))
        assert rec.masks["born_charges"].tolist() == [True, True, True]
        assert "dielectric" not in rec.masks
    assert ds.report.max_symmetry_deviation["dielectric"] < 1e-15
    assert [s.order for s in ds.labels] == [2, 2]


def test_nan_rows_and_mask_array_mark_unlabelled_atoms(tmp_path):
    a, b = labelled(0), labelled(1)
    a.arrays["becs"][1] = np.nan  # a whole NaN row: unlabelled
    b.arrays["becs_mask"] = np.array([True, False, True])  # explicit mask
    b.arrays["becs"][1, 0] = np.nan  # masked out, so its NaN does not matter
    ds = read_dataset(write(tmp_path / "m.extxyz", [a, b]), [BECS])
    for rec in ds:
        assert rec.masks["born_charges"].tolist() == [True, False, True]
        np.testing.assert_array_equal(rec.labels["born_charges"][1], np.zeros((3, 3)))
    np.testing.assert_array_equal(ds[0].labels["born_charges"][2],
                                  a.arrays["becs"][2].reshape(3, 3))


def test_scale_order_inference_and_voigt_label(tmp_path, plans):
    atoms = water()
    c = np.zeros((6, 6))
    c[0, 0], c[0, 1], c[1, 0], c[3, 3] = 100.0, 40.0, 40.0, 25.0
    atoms.info["C"] = c.reshape(36)
    atoms.info["mu"] = np.array([1.0, 2.0, 3.0])
    labels = [LabelSpec("elastic", "C", format="voigt", scale=0.5),
              LabelSpec("dipole", "mu", scale=2.0)]
    ds = read_dataset(write(tmp_path / "v.extxyz", [atoms]), labels, {"elastic": plans["elastic"]})
    t = ds[0].labels["elastic"]
    assert t.shape == (3, 3, 3, 3)
    assert t[0, 0, 0, 0] == 50.0 and t[0, 0, 1, 1] == 20.0 and t[1, 1, 0, 0] == 20.0
    assert t[1, 2, 1, 2] == t[2, 1, 1, 2] == t[2, 1, 2, 1] == 12.5
    np.testing.assert_array_equal(ds[0].labels["dipole"], [2.0, 4.0, 6.0])
    assert {s.name: s.order for s in ds.labels} == {"elastic": 4, "dipole": 1}


def test_key_moved_into_ase_calculator_is_found(tmp_path):
    atoms = water()
    atoms.calc = SinglePointCalculator(atoms, dipole=np.array([0.5, 0.25, 0.0]))
    path = write(tmp_path / "calc.extxyz", [atoms])
    assert "dipole" not in ase.io.read(path).info  # ASE keeps it in a calculator
    ds = read_dataset(path, [LabelSpec("dipole", "dipole")])
    np.testing.assert_array_equal(ds[0].labels["dipole"], [0.5, 0.25, 0.0])


# ------------------------------------------------------------------------------- bad records
def _bad_file(tmp_path, mutate) -> str:
    frames = [labelled(0), labelled(1), labelled(2)]
    mutate(frames[1])
    return write(tmp_path / "bad.extxyz", frames)


def _drop_eps(a):
    del a.info["eps"]


def _short_eps(a):
    a.info["eps"] = np.ones(8)


def _nan_eps(a):
    a.info["eps"] = np.full(9, np.nan)


def _inf_becs(a):
    a.arrays["becs"][2, 4] = np.inf


def _partial_nan_becs(a):
    a.arrays["becs"][0, 3] = np.nan


def _text_eps(a):
    a.info["eps"] = "not a tensor"


def _close_atoms(a):
    a.positions[2] = a.positions[1] + [0.05, 0, 0]


def _zero_cell(a):
    a.pbc = True  # periodic with no cell


def _wrong_becs_columns(a):
    a.arrays["becs"] = np.ones((3, 6))


@pytest.mark.parametrize("mutate, reason, pattern", [
    (_drop_eps, "missing key", r"label 'dielectric': key 'eps' not found in atoms.info"),
    (_short_eps, "wrong length", r"label 'dielectric': expected 9 numbers per structure"),
    (_wrong_becs_columns, "wrong length", r"label 'born_charges': expected 9 numbers per atom"),
    (_nan_eps, "non-finite", r"label 'dielectric': non-finite values"),
    (_inf_becs, "non-finite", r"label 'born_charges': atom 2 has non-finite values"),
    (_partial_nan_becs, "non-finite", r"label 'born_charges': atom 0 has non-finite values"),
    (_text_eps, "not numeric", r"label 'dielectric': key 'eps' holds"),
    (_close_atoms, "atoms too close", r"atoms 1 and 2 are 0.05 Angstrom apart"),
    (_zero_cell, "bad structure", r"the cell is zero or singular"),
])
def test_bad_record_fails_with_file_and_record_then_skips(tmp_path, plans, capsys, mutate,
                                                          reason, pattern):
    path = _bad_file(tmp_path, mutate)
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:record 1: ") + pattern):
        read_dataset(path, [EPS, BECS], plans)
    ds = read_dataset(path, [EPS, BECS], plans, on_error="skip")
    assert [r.index for r in ds] == [0, 2]
    assert ds.report.counts == {reason: 1}
    assert ds.report.skipped[reason][0][0] == 1
    assert f"skipped 1 ({reason})" in capsys.readouterr().err


def test_symmetry_violation_reports_the_deviation(tmp_path, plans):
    sym = np.diag([3.0, 4.0, 12.0])  # |S| = 13
    anti = np.array([[0, 0.5, 0], [-0.5, 0, 0], [0, 0, 0]])  # |A| = sqrt(0.5)
    expected = np.sqrt(0.5) / np.sqrt(13.0**2 + 0.5)  # |A| / |S + A| = 0.0543...

    def mutate(a):
        a.info["eps"] = (sym + anti).reshape(9)

    path = _bad_file(tmp_path, mutate)
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:record 1: label 'dielectric' "
                       f"breaks the symmetry of spec 'dielectric': relative deviation "
                       f"{expected:.3g} > 0.001")):
        read_dataset(path, [EPS], plans)
    ds = read_dataset(path, [EPS], plans, symmetry_tol=0.06)  # looser than the deviation
    assert len(ds) == 3
    assert ds.report.max_symmetry_deviation["dielectric"] == pytest.approx(expected, rel=1e-12)



F32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38


def test_labels_that_overflow_float32_are_refused(tmp_path, plans):
    """A value above float32's largest magnitude would be inf in a float32 model; float64 is fine."""
    def mutate(a):
        a.arrays["becs"][2, 4] = -4e38  # above F32_MAX, finite in float64

    path = _bad_file(tmp_path, mutate)
    assert len(read_dataset(path, [EPS, BECS], plans)) == 3  # no limit: float64 holds it
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:record 1: label 'born_charges': "
                       "atom 2 value -4e+38 (after scale 1) overflows the model's float type")):
        read_dataset(path, [EPS, BECS], plans, max_abs=F32_MAX)
    ds = read_dataset(path, [EPS, BECS], plans, max_abs=F32_MAX, on_error="skip", verbose=False)
    assert ds.report.counts == {"overflow": 1} and [r.index for r in ds] == [0, 2]
    # the scale counts: 1e37 * 100 overflows; 1e37 alone does not
    eps = LabelSpec("dielectric", "eps", scale=100.0)
    frames = [labelled(0)]
    frames[0].info["eps"] = np.eye(3).reshape(9) * 1e37
    path = write(tmp_path / "scaled.extxyz", frames)
    assert len(read_dataset(path, [EPS], plans, max_abs=F32_MAX)) == 1
    with pytest.raises(DataError, match=r"record 0: label 'dielectric': value 1e\+39 \(after "
                                        r"scale 100\)"):
        read_dataset(path, [eps], plans, max_abs=F32_MAX)


def test_skip_mode_counts_every_reason(tmp_path, plans):
    frames = [labelled(k) for k in range(6)]
    _drop_eps(frames[0])
    _nan_eps(frames[2])
    _close_atoms(frames[3])
    _drop_eps(frames[5])
    path = write(tmp_path / "many.extxyz", frames)
    ds = read_dataset(path, [EPS, BECS], plans, on_error="skip", verbose=False)
    assert [r.index for r in ds] == [1, 4]
    assert ds.report.counts == {"atoms too close": 1, "missing key": 2, "non-finite": 1}
    assert ds.report.n_records == 6 and ds.report.n_kept == 2
    assert [i for i, _ in ds.report.skipped["missing key"]] == [0, 5]
    assert ds.report.summary().startswith(f"{path}: 2 of 6 records kept")


def test_uncovered_element_named_before_use_then_skipped(tmp_path, plans, capsys):
    """``max_z`` (the model's): a record with thulium (69) names file, record, atom and element."""
    frames = [labelled(k) for k in range(5)]
    frames[3].numbers[1] = 69  # Tm
    frames[3].numbers[2] = 92  # U
    path = write(tmp_path / "tm.extxyz", frames)
    with pytest.raises(DataError, match="^" + re.escape(
            f"{path}:record 3: atom 1 is Tm (Z = 69), an element the model does not cover "
            "(Z = 1..53); also U (Z = 92)\nhint: use a model whose embedding covers it")):
        read_dataset(path, [EPS, BECS], plans, max_z=53)
    ds = read_dataset(path, [EPS, BECS], plans, on_error="skip", max_z=53)
    assert [r.index for r in ds] == [0, 1, 2, 4]
    assert ds.report.counts == {"unknown element": 1}
    err = capsys.readouterr().err
    assert "skipped 1 (unknown element): records 3; first: record 3: atom 1 is Tm" in err
    assert len(read_dataset(path, [EPS, BECS], plans, verbose=False)) == 5  # no max_z: kept
    assert read_dataset(path, [EPS], plans, verbose=False).report.elements == (1, 8, 69, 92)


def _frames_text(k: int) -> list[list[str]]:
    """The lines of ``k`` labelled frames, one list per frame."""
    out = []
    for i in range(k):
        buf = io.StringIO()
        ase.io.write(buf, labelled(i), format="extxyz")
        out.append(buf.getvalue().splitlines(True))
    return out


def _truncated(frames):  # the file ends inside frame 4 (of 5)
    return [ln for f in frames[:4] for ln in f] + frames[4][:3]


def _count_too_small(frames):  # frame 2's header says 2 atoms, 3 atom lines follow
    frames[2][0] = "2\n"
    return [ln for f in frames for ln in f]


def _count_too_large(frames):  # frame 2's header says 4 atoms, 3 atom lines follow
    frames[2][0] = "4\n"
    return [ln for f in frames for ln in f]


@pytest.mark.parametrize("damage, bad, message", [
    (_truncated, 4, r"the frame is truncated: the header \(line 21\) says 3 atoms, the file ends "
                    r"after 1"),
    (_count_too_small, 2, r"the header \(line 11\) says 2 atoms but atom lines go on after them "
                          r"\(lines 15..15\)"),
    (_count_too_large, 2, r"the header \(line 11\) says 4 atoms but the frame has 3 atom lines: "
                          r"line 16 starts the next frame"),
])
def test_unreadable_frame_named_and_its_neighbours_kept(tmp_path, plans, capsys, damage, bad,
                                                        message):
    path = tmp_path / "broken.extxyz"
    path.write_text("".join(damage(_frames_text(5))))
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:record {bad}: ") + message):
        read_dataset(path, [EPS, BECS], plans)
    ds = read_dataset(path, [EPS, BECS], plans, on_error="skip")
    kept = [k for k in range(5) if k != bad]
    assert [r.index for r in ds] == kept and ds.report.n_records == 5
    for rec in ds:  # each kept frame holds its own labels (no shift after the bad frame)
        np.testing.assert_array_equal(rec.labels["dielectric"].reshape(9),
                                      labelled(rec.index).info["eps"])
    assert f"skipped 1 (unreadable frame): records {bad}; first: record {bad}: " in \
        capsys.readouterr().err


def test_skip_summary_lists_every_record_as_runs(tmp_path, plans):
    frames = [labelled(k) for k in range(80)]
    dropped = [2, 3, 4, 7] + list(range(10, 70, 2))  # 4 + 30 records in 32 runs
    for k in dropped:
        _drop_eps(frames[k])
    path = write(tmp_path / "many.extxyz", frames)
    summary = read_dataset(path, [EPS], plans, on_error="skip", verbose=False).report.summary()
    runs = "2-4, 7, " + ", ".join(str(k) for k in range(10, 66, 2))  # the first 30 runs
    assert f"skipped 34 (missing key): records {runs}, and 2 more; first: record 2: " in summary


def test_unreadable_or_missing_file(tmp_path):
    missing = tmp_path / "nope.extxyz"
    with pytest.raises(DataError, match="^" + re.escape(f"{missing}: no such file")):
        read_dataset(missing, [EPS])
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("3\nfoo\nthis is not xyz\n")
    with pytest.raises(DataError, match="^" + re.escape(f"{garbage}: cannot read")):
        read_dataset(garbage, [EPS])


def test_label_spec_config_and_plan_mismatch(tmp_path, plans):
    d = {"name": "elastic", "key": "C", "format": "voigt", "unit": "GPa", "scale": 1.0,
         "level": "structure", "order": 4}
    assert LabelSpec.from_dict(d).to_dict() == d
    with pytest.raises(LabelSpecError, match=r"unknown label field\(s\) \['fromat'\]"):
        LabelSpec.from_dict({"name": "a", "key": "a", "fromat": "flat"})
    with pytest.raises(LabelSpecError, match="format must be one of"):
        LabelSpec("a", "a", format="matrix")
    with pytest.raises(LabelSpecError, match="Voigt form exists for order 3"):
        LabelSpec("a", "a", format="voigt", order=2)
    path = write(tmp_path / "ok.extxyz", [labelled(0)])
    with pytest.raises(LabelSpecError, match="level 'structure' but the spec 'born_charges'"):
        read_dataset(path, [LabelSpec("born_charges", "becs")], plans)
    ds = read_dataset(path, [dict(name="dielectric", key="eps")], plans)  # dicts accepted
    assert ds[0].labels["dielectric"].shape == (3, 3)


# ----------------------------------------------------------------------------------- Voigt
def test_voigt_pairs_are_ieee_order():
    assert VOIGT_PAIRS == ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def test_stiffness_voigt_hand_worked():
    c = np.zeros((6, 6))
    c[0, 0] = 1.0                         # C11 = C_xxxx
    c[0, 1] = c[1, 0] = 2.0               # C12 = C_xxyy
    c[3, 3] = 3.0                         # C44 = C_yzyz
    c[5, 5] = 5.0                         # C66 = C_xyxy
    c[0, 4] = c[4, 0] = 7.0               # C15 = C_xxxz
    expected = np.zeros((3, 3, 3, 3))
    expected[0, 0, 0, 0] = 1.0
    expected[0, 0, 1, 1] = expected[1, 1, 0, 0] = 2.0
    for i, j in ((1, 2), (2, 1)):
        for k, l in ((1, 2), (2, 1)):
            expected[i, j, k, l] = 3.0
    for i, j in ((0, 1), (1, 0)):
        for k, l in ((0, 1), (1, 0)):
            expected[i, j, k, l] = 5.0
    for ij, kl in (((0, 0), (0, 2)), ((0, 0), (2, 0)), ((0, 2), (0, 0)), ((2, 0), (0, 0))):
        expected[ij + kl] = 7.0
    np.testing.assert_array_equal(voigt_to_tensor4(c), expected)
    np.testing.assert_array_equal(tensor4_to_voigt(expected), c)


def test_stiffness_voigt_has_no_factors_hookes_law():
    """sigma_ij = C_ijkl eps_kl equals sigma_I = C_IJ eps_J with engineering shear strains."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    c = a + a.T
    eps = rng.normal(size=(3, 3))
    eps = eps + eps.T
    sigma = np.einsum("ijkl,kl->ij", voigt_to_tensor4(c), eps)
    eng = np.array([eps[0, 0], eps[1, 1], eps[2, 2], 2 * eps[1, 2], 2 * eps[0, 2], 2 * eps[0, 1]])
    sigma_voigt = c @ eng
    np.testing.assert_allclose([sigma[i, j] for i, j in VOIGT_PAIRS], sigma_voigt, rtol=1e-13)


def test_piezo_voigt_hand_worked_and_polarisation():
    e = np.zeros((3, 6))
    e[2, 0] = 1.0   # e31 = e_zxx
    e[2, 2] = 2.0   # e33 = e_zzz
    e[0, 4] = 3.0   # e15 = e_xxz
    e[1, 5] = 4.0   # e26 = e_yxy
    expected = np.zeros((3, 3, 3))
    expected[2, 0, 0] = 1.0
    expected[2, 2, 2] = 2.0
    expected[0, 0, 2] = expected[0, 2, 0] = 3.0
    expected[1, 0, 1] = expected[1, 1, 0] = 4.0
    np.testing.assert_array_equal(voigt_to_tensor3(e), expected)
    np.testing.assert_array_equal(tensor3_to_voigt(expected), e)
    eps = np.array([[0.1, 0.2, 0.3], [0.2, 0.4, 0.5], [0.3, 0.5, 0.6]])
    eng = np.array([eps[0, 0], eps[1, 1], eps[2, 2], 2 * eps[1, 2], 2 * eps[0, 2], 2 * eps[0, 1]])
    np.testing.assert_allclose(np.einsum("ijk,jk->i", expected, eps), e @ eng, rtol=1e-14)


def test_voigt_inverse_symmetrises_and_batches():
    rng = np.random.default_rng(1)
    t = rng.normal(size=(2, 3, 3, 3, 3))  # no symmetry at all
    c = tensor4_to_voigt(t)  # [2, 6, 6]
    back = voigt_to_tensor4(c)
    minor = (t + t.swapaxes(1, 2) + t.swapaxes(3, 4) + t.swapaxes(1, 2).swapaxes(3, 4)) / 4
    np.testing.assert_allclose(back, minor, atol=1e-14)
    np.testing.assert_allclose(tensor4_to_voigt(back), c, atol=1e-14)
    e = rng.normal(size=(4, 3, 3, 3))
    np.testing.assert_allclose(voigt_to_tensor3(tensor3_to_voigt(e)),
                               (e + e.swapaxes(2, 3)) / 2, atol=1e-14)


# ----------------------------------------------------------------------------------- splits
def test_split_reproducible_disjoint_and_complete(tmp_path):
    a = split(103, seed=7)
    assert a == split(103, seed=7)
    assert a != split(103, seed=8)
    assert [len(a[k]) for k in ("train", "valid", "test")] == [82, 10, 11]
    union = a["train"] + a["valid"] + a["test"]
    assert sorted(union) == list(range(103))
    assert all(a[k] == sorted(a[k]) for k in a)
    b = split(list(range(10)), fractions=(0.5, 0.5, 0.0), seed=0)
    assert len(b["train"]) == 5 and len(b["valid"]) == 5 and b["test"] == []
    path = tmp_path / "split.json"
    save_split(path, a, seed=7, source="x.extxyz")
    assert load_split(path) == a
    assert json.loads(path.read_text())["seed"] == 7
    with pytest.raises(ValueError, match="fractions must be three"):
        split(10, fractions=(0.5, 0.4))


def test_load_split_rejects_overlap(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train": [0, 1], "valid": [1], "test": []}))
    with pytest.raises(DataError, match="^" + re.escape(f"{path}: split part 'valid' overlaps")):
        load_split(path)


def test_load_split_reads_the_old_val_spelling(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"train": [0, 1], "val": [2], "test": [3]}))
    assert load_split(path) == {"train": [0, 1], "valid": [2], "test": [3]}


# ----------------------------------------------------------------------------------- graphs
def test_collate_records_labels_and_masks(tmp_path, plans, dtype, tol):
    frames = [labelled(k) for k in range(3)]
    frames[1].arrays["becs"][0] = np.nan
    ds = read_dataset(write(tmp_path / "g.extxyz", frames), [EPS, BECS], plans)
    g = collate_records(ds[1:], cutoff=2.0, dtype=dtype)
    assert int(g[keys.NUM_GRAPHS]) == 2
    assert g["label:dielectric"].shape == (2, 3, 3) and g["label:dielectric"].dtype == dtype
    assert g["label:born_charges"].shape == (6, 3, 3)
    assert g["mask:born_charges"].tolist() == [False, True, True, True, True, True]
    assert "mask:dielectric" not in g
    want = np.stack([frames[k].info["eps"].reshape(3, 3) for k in (1, 2)])
    assert torch.allclose(g["label:dielectric"], torch.as_tensor(want, dtype=dtype), atol=tol)
    want_b = frames[2].arrays["becs"].reshape(3, 3, 3)
    assert torch.allclose(g["label:born_charges"][3:], torch.as_tensor(want_b, dtype=dtype),
                          atol=tol)
    assert torch.all(g["label:born_charges"][0] == 0)
