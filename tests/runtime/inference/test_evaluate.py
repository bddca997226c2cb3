"""Evaluation metrics, elastic moduli, point-group deviation, parity plots, ``tsym eval``.

Expected values are worked out by hand from constructed predictions (a stub model returns fixed
arrays), from closed forms (isotropic and cubic Voigt-Reuss-Hill moduli), or from the symmetry of
wurtzite (point group 6mm, c along z: an invariant rank-2 tensor is ``diag(a, a, b)``).  All
metric arithmetic is float64; the comparisons hold to 1e-12 relative unless stated.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import read, write

from tsym.compiler import compile_file, compile_text
from tsym.runtime.data.voigt import voigt_to_tensor4
from tsym.runtime.data.crystal import point_group_deviation
from tsym.runtime.inference.evaluate import (evaluate, positive_definite_share,
                                             tensor_metrics, vrh_moduli)
from tsym.runtime.inference.plots import parity_plots

import tsym

from ...conftest import SPECS_DIR

SYM2 = compile_text("tensor alpha { indices ij; symmetry ij = ji }")[0]
DIELECTRIC = compile_file(SPECS_DIR / "dielectric.tsym")[0]
BORN = compile_file(SPECS_DIR / "born_charges.tsym")[0]
ELASTIC = compile_file(SPECS_DIR / "elastic.tsym")[0]
RTOL = 1e-12


class FixedModel:
    """A stand-in model that returns fixed predictions (evaluate needs plans and predict)."""

    def __init__(self, plans, outputs):
        self.plans = tuple(plans)
        self.outputs = outputs

    def predict(self, structures, batch_size=32):
        return {k: np.array(v) for k, v in self.outputs.items()}


def isotropic_voigt(lam: float, mu: float) -> np.ndarray:
    c = np.zeros((6, 6))
    c[:3, :3] = lam
    c[[0, 1, 2], [0, 1, 2]] = lam + 2 * mu
    c[[3, 4, 5], [3, 4, 5]] = mu
    return c


def wurtzite() -> Atoms:
    return bulk("ZnO", "wurtzite", a=3.25, c=5.21)


# ------------------------------------------------------------------------------ metrics
def test_tensor_metrics_hand_computed():
    true = np.stack([2 * np.eye(3), 2 * np.eye(3)])  # [2, 3, 3]
    d1 = 0.3 * np.eye(3)  # isotropic error: only the 0e block
    d2 = np.diag([1.0, -1.0, 0.0])  # traceless error: only the 2e block
    m = tensor_metrics(true + np.stack([d1, d2]), true, SYM2)
    assert m["n"] == 2
    assert m["mae"] == pytest.approx((3 * 0.3 + 2.0) / 18, rel=RTOL)
    assert m["rmse"] == pytest.approx(math.sqrt((3 * 0.09 + 2.0) / 18), rel=RTOL)
    assert m["norm_mae"] == pytest.approx((0.3 * math.sqrt(3) + math.sqrt(2)) / 2, rel=RTOL)
    assert m["norm_rmse"] == pytest.approx(math.sqrt((0.27 + 2.0) / 2), rel=RTOL)
    assert m["true_norm_rms"] == pytest.approx(2 * math.sqrt(3), rel=RTOL)
    cm = np.array(m["component_mae"])
    assert cm.shape == (3, 3)
    np.testing.assert_allclose(np.diag(cm), [0.65, 0.65, 0.15], rtol=RTOL)
    assert cm[0, 1] == 0.0
    # 0e coordinate = tr / sqrt(3) (orthonormal Q); 2e block = the traceless symmetric part
    l0, l2 = m["per_l"]["0e"], m["per_l"]["2e"]
    assert (l0["dim"], l2["dim"]) == (1, 5)
    assert l0["norm_mae"] == pytest.approx(0.9 / math.sqrt(3) / 2, rel=1e-12)
    assert l0["rmse"] == pytest.approx(math.sqrt(0.27 / 2), rel=1e-12)
    assert l2["norm_mae"] == pytest.approx(math.sqrt(2) / 2, rel=1e-12)
    assert l2["rmse"] == pytest.approx(math.sqrt(2.0 / 10), rel=1e-12)
    # the l blocks split the Frobenius error: sum_l norm_rmse_l^2 = norm_rmse^2
    assert l0["norm_rmse"] ** 2 + l2["norm_rmse"] ** 2 == pytest.approx(m["norm_rmse"] ** 2)


def test_tensor_metrics_rejects_mismatch():
    with pytest.raises(ValueError, match=r"^pred \(2, 3\) and true \(3, 3\)"):
        tensor_metrics(np.zeros((2, 3)), np.zeros((3, 3)))


# ---------------------------------------------------------------------------- VRH, PD
@pytest.mark.parametrize("lam, mu", [(60.0, 20.0), (-10.0, 45.0), (120.5, 3.25)])
def test_vrh_isotropic_is_lame(lam, mu):
    moduli = vrh_moduli(isotropic_voigt(lam, mu))
    for name in ("K_V", "K_R", "K_H"):
        assert float(moduli[name]) == pytest.approx(lam + 2 * mu / 3, rel=RTOL)
    for name in ("G_V", "G_R", "G_H"):
        assert float(moduli[name]) == pytest.approx(mu, rel=RTOL)


def test_vrh_cubic_closed_forms():
    c11, c12, c44 = 168.4, 121.4, 75.4  # copper, GPa
    c = np.zeros((6, 6))
    c[:3, :3] = c12
    c[[0, 1, 2], [0, 1, 2]] = c11
    c[[3, 4, 5], [3, 4, 5]] = c44
    m = vrh_moduli(np.stack([c, 2 * c]))  # batched [2, 6, 6] -> [2]
    k = (c11 + 2 * c12) / 3
    gv = (c11 - c12 + 3 * c44) / 5
    gr = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    expected = {"K_V": k, "K_R": k, "G_V": gv, "G_R": gr, "K_H": k, "G_H": (gv + gr) / 2}
    for name, value in expected.items():
        np.testing.assert_allclose(m[name], [value, 2 * value], rtol=RTOL)
    assert gr < gv  # Reuss is the lower bound for an anisotropic crystal


def test_vrh_singular_gives_nan_reuss():
    c = isotropic_voigt(10.0, 5.0)
    c[5] = 0.0
    c[:, 5] = 0.0  # C66 = 0: singular
    m = vrh_moduli(c)
    assert np.isnan(m["K_R"]) and np.isnan(m["G_H"])
    assert float(m["K_V"]) == pytest.approx((3 * 20 + 6 * 10) / 9, rel=RTOL)


def test_positive_definite_share():
    stable = isotropic_voigt(60.0, 20.0)
    shear_unstable = isotropic_voigt(60.0, -1.0)  # mu < 0
    bulk_unstable = isotropic_voigt(-50.0, 20.0)  # 3 lambda + 2 mu < 0
    skew = np.eye(6) + np.triu(np.full((6, 6), 5.0), 1) - np.tril(np.full((6, 6), 5.0), -1)
    share = positive_definite_share(np.stack([stable, shear_unstable, bulk_unstable, skew]))
    assert share == 0.5  # the antisymmetric part of `skew` does not count


# ------------------------------------------------------------------------ point group
def test_point_group_deviation_wurtzite_rank2():
    atoms = wurtzite()
    assert point_group_deviation(np.diag([2.0, 2.0, 3.5]), atoms) < 1e-12
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 3))
    p = np.diag([(t[0, 0] + t[1, 1]) / 2, (t[0, 0] + t[1, 1]) / 2, t[2, 2]])  # 6mm average
    expected = np.linalg.norm(t - p) / np.linalg.norm(t)
    assert point_group_deviation(t, atoms) == pytest.approx(expected, rel=1e-9)
    assert point_group_deviation(np.zeros((3, 3)), atoms) == 0.0


def test_point_group_deviation_axial_and_elastic():
    atoms = wurtzite()
    z = np.array([0.0, 0.0, 1.0])
    assert point_group_deviation(z, atoms) < 1e-12  # polar vector along the 6-fold axis
    assert point_group_deviation(z, atoms, axial=True) == pytest.approx(1.0)  # mirrors flip it
    c11, c12, c13, c33, c44 = 210.0, 120.0, 105.0, 211.0, 43.0
    c = np.array([[c11, c12, c13, 0, 0, 0], [c12, c11, c13, 0, 0, 0], [c13, c13, c33, 0, 0, 0],
                  [0, 0, 0, c44, 0, 0], [0, 0, 0, 0, c44, 0],
                  [0, 0, 0, 0, 0, (c11 - c12) / 2]])  # hexagonal
    assert point_group_deviation(voigt_to_tensor4(c), atoms) < 1e-12
    c[0, 1] = c[1, 0] = c12 + 30.0  # C66 != (C11 - C12) / 2: only orthorhombic
    assert point_group_deviation(voigt_to_tensor4(c), atoms) > 1e-2


def test_point_group_deviation_atom_level():
    atoms = wurtzite()  # Zn, O, Zn, O; sites 3m: diag(a, a, b) per atom, same per species
    zn, o = np.diag([2.1, 2.1, 2.3]), np.diag([-2.1, -2.1, -2.3])
    t = np.stack([zn, o, zn, o])
    assert point_group_deviation(t, atoms, level="atom") < 1e-12
    swapped = np.stack([zn, o, 1.5 * zn, o])  # the 6_3 screw maps atom 0 to atom 2
    assert point_group_deviation(swapped, atoms, level="atom") > 1e-2


# ------------------------------------------------------------------ evaluate, end to end
def _write(path, frames):
    write(path, frames, format="extxyz")
    return path


def test_evaluate_masks_unlabelled_atoms_and_scores_crystals(tmp_path):
    rng = np.random.default_rng(1)
    frames = [molecule("H2O"), wurtzite()]
    eps = [np.diag([1.5, 2.0, 2.5]), np.diag([4.0, 4.0, 5.0])]  # the crystal's is 6mm-invariant
    born = [rng.normal(size=(3, 3, 3)), rng.normal(size=(4, 3, 3))]
    born[0][1:] = np.nan  # H2O: only O labelled
    born[1][[1, 3]] = np.nan  # ZnO: only the Zn atoms labelled
    for atoms, e, b in zip(frames, eps, born):
        atoms.info["eps"] = e.reshape(-1)
        atoms.arrays["becs"] = b.reshape(len(atoms), 9)
    path = _write(tmp_path / "data.extxyz", frames)
    back = read(path, index=":")  # the labels as written (extxyz keeps 8 decimals of arrays)
    born = [a.arrays["becs"].reshape(len(a), 3, 3) for a in back]

    d_eps = np.stack([0.1 * np.eye(3), rng.normal(size=(3, 3))])
    d_eps[1] = d_eps[1] + d_eps[1].T
    pred_eps = np.stack(eps) + d_eps
    pred_born = np.concatenate(born)  # [7, 3, 3]
    labelled = ~np.isnan(pred_born).reshape(7, -1).all(axis=1)
    d_born = rng.normal(size=(int(labelled.sum()), 3, 3))
    pred_born[labelled] += d_born
    pred_born[~labelled] = 1e6  # must not enter any metric
    model = FixedModel([DIELECTRIC, BORN], {"dielectric": pred_eps, "born_charges": pred_born})
    from tsym.runtime.data.labels import LabelSpec

    labels = [LabelSpec("dielectric", "eps"), LabelSpec("born_charges", "becs", level="atom")]
    report = evaluate(model, path, labels)
    b = report.heads["born_charges"].metrics
    assert b["n"] == 3
    assert b["mae"] == pytest.approx(np.abs(d_born).mean(), rel=RTOL)
    assert b["rmse"] == pytest.approx(np.sqrt((d_born ** 2).mean()), rel=RTOL)
    e = report.heads["dielectric"].metrics
    assert e["n"] == 2
    assert e["mae"] == pytest.approx(np.abs(d_eps).mean(), rel=RTOL)
    iso = np.trace(d_eps, axis1=1, axis2=2) / 3
    assert e["derived"]["isotropic_mae"] == pytest.approx(np.abs(iso).mean(), rel=RTOL)

    def aniso(t):
        return np.linalg.norm(t - np.trace(t) / 3 * np.eye(3))

    da = [abs(aniso(p) - aniso(t)) for p, t in zip(pred_eps, eps)]
    assert e["derived"]["anisotropy_mae"] == pytest.approx(np.mean(da), rel=RTOL)
    # the crystal only: its prediction deviates from 6mm as the hand-made average says
    t = pred_eps[1]
    avg = np.diag([(t[0, 0] + t[1, 1]) / 2] * 2 + [t[2, 2]])
    sym = e["symmetry"]
    assert sym["n_crystals"] == 1
    assert sym["pred_mean"] == pytest.approx(np.linalg.norm(t - avg) / np.linalg.norm(t),
                                             rel=1e-9)
    assert sym["true_max"] < 1e-12
    assert "true_mean" not in b["symmetry"]  # O atoms unlabelled: no verdict on the labels
    out = report.write_json(tmp_path / "m.json")
    assert json.loads(out.read_text())["heads"]["born_charges"]["n"] == 3


def test_evaluate_elastic_moduli_and_plots(tmp_path):
    frames = [molecule("CH4"), molecule("NH3"), molecule("H2O")]
    true = [isotropic_voigt(60, 20), isotropic_voigt(100, 30), isotropic_voigt(80, 40)]
    pred = [isotropic_voigt(62, 21), isotropic_voigt(100, -3), isotropic_voigt(77, 40)]
    for atoms, c in zip(frames, true):
        atoms.info["C"] = c.reshape(-1)
    path = _write(tmp_path / "c.extxyz", frames)
    from tsym.runtime.data.labels import LabelSpec

    model = FixedModel([ELASTIC], {"elastic": voigt_to_tensor4(np.stack(pred))})
    report = evaluate(model, path, [LabelSpec("elastic", "C", format="voigt", unit="GPa")])
    d = report.heads["elastic"].metrics["derived"]

    def k(lam, mu):
        return lam + 2 * mu / 3

    dk = [k(62, 21) - k(60, 20), k(100, -3) - k(100, 30), k(77, 40) - k(80, 40)]
    assert d["K_H_mae"] == pytest.approx(np.mean(np.abs(dk)), rel=1e-10)
    assert d["G_V_mae"] == pytest.approx((1 + 33 + 0) / 3, rel=1e-10)
    assert d["positive_definite_share"] == pytest.approx(2 / 3)
    assert d["positive_definite_share_true"] == 1.0
    assert "symmetry" not in report.heads["elastic"].metrics  # molecules only
    paths = parity_plots(report, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["elastic_l0e.png", "elastic_l2e.png", "elastic_l4e.png",
                     "elastic_moduli.png", "elastic_parity.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


# ------------------------------------------------------------------ tsym eval on a run
ALPHA = "tensor alpha { indices ij; symmetry ij = ji; pool sum }"


def _labelled(n, seed):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = molecule(["H2O", "CH4", "NH3", "CH3OH"][k % 4])
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        r = atoms.positions - atoms.positions.mean(axis=0)
        atoms.info["polar"] = (r.T @ r + len(atoms) * np.eye(3)).reshape(-1)
        frames.append(atoms)
    return frames


def test_cli_eval_run_directory(tmp_path, capsys):
    from tsym.cli.eval import register
    from tsym.runtime.model import build_model
    from tsym.runtime.training.loop import train

    torch.set_num_threads(1)
    data = _write(tmp_path / "train.extxyz", _labelled(8, 0))
    config = {"model": {"backbone_kwargs": {"num_scalars": 8, "irreps": "4x0e+2x1o+2x2e",
                                            "num_blocks": 1, "embedding": "onehot"},
                        "head_kwargs": {"hidden_mul": 2, "mlp_hidden": 4}, "cutoff": 3.0},
              "heads": {"alpha": {"spec": ALPHA, "key": "polar", "unit": "bohr^3"}},
              "data": {"train": str(data), "valid_fraction": 0.25},
              "training": {"max_steps": 2, "epochs": None, "batch_size": 4, "progress": False,
                           "device": "cpu"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    train(tmp_path / "cfg.yaml", run)
    test = _write(tmp_path / "test.extxyz", _labelled(5, 7))
    test_frames = read(test, index=":")  # positions and labels as written (rounded)

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["eval", str(run), str(test)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    head = metrics["heads"]["alpha"]
    assert head["n"] == 5 and head["unit"] == "bohr^3"
    # independent: the trainer's own loader, numpy errors
    pred = build_model(checkpoint=run / "best.pt").predict(test_frames)["alpha"].astype(np.float64)
    true = np.stack([a.info["polar"].reshape(3, 3) for a in test_frames])
    assert head["mae"] == pytest.approx(np.abs(pred - true).mean(), rel=1e-9)
    plots = [line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("plot: ")]
    assert sorted(p.rsplit("/", 1)[1] for p in plots) == ["alpha_l0e.png", "alpha_l2e.png",
                                                           "alpha_parity.png"]
    assert "alpha (1x0e+1x2e, 5 structures, bohr^3): MAE " in printed
    with pytest.raises(Exception, match=r"^--labels 'polar=beta': the model has no head 'beta'"):
        args = parser.parse_args(["eval", str(run), str(test), "--labels", "polar=beta"])
        args.func(args)


def test_is_elastic_only_for_stiffness_like_specs():
    from tsym.runtime.inference.evaluate import is_elastic

    elastic, = tsym.compile_file(SPECS_DIR / "elastic.tsym")
    gamma, = tsym.compile_file(SPECS_DIR / "second_hyperpolarizability.tsym")
    minor_only, = tsym.compile_text("tensor c { indices ijkl; symmetry ijkl = jikl = ijlk }")
    assert is_elastic(elastic)
    assert not is_elastic(gamma)  # fully symmetric: no Voigt moduli
    assert not is_elastic(minor_only)  # 36 components, no major symmetry
