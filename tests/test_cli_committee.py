"""``tsym eval --committee`` and ``tsym predict --committee`` on tiny runs (2 steps each)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from ase.build import molecule
from ase.io import read, write

from tests.runtime.training.test_train import make_config, write_dataset
from tsym.cli import main
from tsym.runtime.errors import CommitteeError
from tsym.runtime.kernel import load_committee

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(root, name: str, seed: int, alpha_spec: str | None = None) -> str:
    cfg = make_config(root / "d.extxyz", shield=True, max_steps=2, seed=seed)
    if alpha_spec:
        cfg["heads"]["alpha"]["spec"] = alpha_spec
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / f"{name}.yaml"), "--run-dir", str(root / name)]) == 0
    return str(root / name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny float64 runs of one config (seeds 0, 1, 2), labelled data, a validation file."""
    root = tmp_path_factory.mktemp("committee")
    write_dataset(root / "d.extxyz", n=12, shield=True)
    write_dataset(root / "valid.extxyz", n=6, seed=5, shield=True)
    return root, [_train(root, f"run{s}", s) for s in range(3)]


def _predict(root, args, out):
    assert main(["predict", *args[:1], str(root / "new.extxyz"), "-o", str(root / out),
                 *args[1:]]) == 0
    return read(root / out, ":")


def test_committee_mean_and_std_match_numpy_over_the_members(runs, capsys):
    root, paths = runs
    mols = [molecule("H2O"), molecule("CH4"), molecule("NH3")]
    write(root / "new.extxyz", mols, format="extxyz")
    each = [_predict(root, [p], f"m{k}.extxyz") for k, p in enumerate(paths)]
    both = _predict(root, [paths[0], "--committee", *paths[1:]], "committee.extxyz")
    for k, atoms in enumerate(both):
        alpha = np.stack([m[k].info["alpha"] for m in each])  # [3 members, 9]
        # extxyz keeps 8 decimals
        np.testing.assert_allclose(atoms.info["alpha"], alpha.mean(0), rtol=1e-7, atol=1e-7)
        # the irreps basis is orthonormal: the Frobenius std over irreps coordinates is that
        # over the Cartesian components of the (symmetric) tensors
        std = np.sqrt(alpha.var(0, ddof=1).sum())
        np.testing.assert_allclose(atoms.info["alpha_std"], std, rtol=1e-5, atol=1e-7)
        shield = np.stack([m[k].arrays["shield"] for m in each])  # [3, n_atoms, 9]
        np.testing.assert_allclose(atoms.arrays["shield"], shield.mean(0), rtol=1e-7,
                                   atol=1e-7)
        assert atoms.arrays["shield_std"].shape == (len(atoms),)
        np.testing.assert_allclose(atoms.arrays["shield_std"],
                                   np.sqrt(shield.var(0, ddof=1).sum(1)), rtol=1e-5, atol=1e-7)
    assert min(a.info["alpha_std"] for a in both) > 0


def test_predict_committee_in_memory_matches_numpy_to_rounding(runs):
    from tsym.runtime.inference.predict import predict_structures
    from tsym.runtime.kernel import predict_committee

    _, paths = runs
    mols = [molecule("H2O"), molecule("CH3OH")]
    members = load_committee(paths)
    pred = predict_committee(members, mols)
    each = [predict_structures(m.model, mols) for m in members]  # the members' own predictions
    alpha = np.stack([[a.info["alpha"] for a in m] for m in each])  # [3, 2, 9]
    np.testing.assert_allclose(pred["alpha"]["cartesian"].reshape(2, 9).numpy(), alpha.mean(0),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pred["alpha"]["std"].numpy(),
                               np.sqrt(alpha.var(0, ddof=1).sum(1)), rtol=1e-10)
    shield = np.stack([np.concatenate([a.arrays["shield"] for a in m]) for m in each])
    np.testing.assert_allclose(pred["shield"]["std"].numpy(),
                               np.sqrt(shield.var(0, ddof=1).sum(-1)), rtol=1e-10)


def test_committee_of_identical_runs_has_zero_std(runs, tmp_path):
    root, paths = runs
    write(tmp_path / "new.extxyz", [molecule("H2O"), molecule("CH4")], format="extxyz")
    back = _predict(tmp_path, [paths[0], "--committee", paths[0]], "same.extxyz")
    single = _predict(tmp_path, [paths[0]], "single.extxyz")
    for a, b in zip(back, single):
        assert a.info["alpha_std"] == 0.0 and np.all(a.arrays["shield_std"] == 0.0)
        np.testing.assert_allclose(a.info["alpha"], b.info["alpha"], rtol=1e-12)


def test_members_with_another_spec_are_refused(runs, capsys):
    root, paths = runs
    other = _train(root, "other", 0, alpha_spec="tensor alpha { indices ij; pool sum }")
    write(root / "new.extxyz", [molecule("H2O")], format="extxyz")
    capsys.readouterr()
    assert main(["predict", paths[0], str(root / "new.extxyz"), "-o", str(root / "x.extxyz"),
                 "--committee", other]) == 2
    err = capsys.readouterr().err
    assert "other: head 'alpha' differs from that of " in err
    assert "run0 in its spec ('tensor alpha { indices ij parity polar" in err
    assert main(["eval", paths[0], str(root / "d.extxyz"), "--committee", other,
                 "--labels", "alpha=alpha", "--no-plots", "-o", str(root / "ev_x")]) == 2
    assert "in its spec" in capsys.readouterr().err


def test_eval_committee_reports_calibration_and_writes_the_figure(runs, capsys):
    root, paths = runs
    capsys.readouterr()
    out_dir = root / "ev"
    assert main(["eval", paths[0], str(root / "d.extxyz"),
                 "--committee", *paths[1:], "--calibrate-on", str(root / "valid.extxyz"),
                 "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "committee alpha (3 runs): Frobenius RMSE" in out and "coverage 68 %" in out
    assert "valid.extxyz); raw spread: coverage 68 %" in out
    m = json.loads((out_dir / "committee_metrics.json").read_text())["alpha"]
    assert set(m["calibration"]) >= {"coverage_68", "coverage_95", "spearman", "worst"}
    assert m["scale"] > 0 and m["scale_fitted_on"].endswith("valid.extxyz")
    assert len(m["members"]) == 3 and {"record", "std", "error"} <= set(m["calibration"]
                                                                        ["worst"][0])
    # the scale multiplies every std: the Spearman correlation does not move
    assert m["calibration"]["spearman"] == pytest.approx(m["raw_calibration"]["spearman"])
    assert (out_dir / "committee_calibration_alpha.png").stat().st_size > 0
    # atom level: judged on the labelled (non-H) atoms, the worst named by atom
    assert "committee shield (3 runs)" in out and "worst: atom " in out
    assert (out_dir / "committee_calibration_shield.png").stat().st_size > 0


def test_scale_is_never_fitted_on_the_test_data_and_needs_a_committee(runs, capsys):
    root, paths = runs
    data = str(root / "d.extxyz")
    assert main(["eval", paths[0], data, "--labels", "alpha=alpha", "--committee", paths[1],
                 "--calibrate-on", data, "--no-plots", "-o", str(root / "ev_bad")]) == 2
    assert "never on the test data" in capsys.readouterr().err
    assert main(["eval", paths[0], str(root / "valid.extxyz"), "--labels", "alpha=alpha",
                 "--committee", paths[1], "--calibrate-on", data, "--no-plots",
                 "-o", str(root / "ev_train")]) == 2
    assert "run0 trained on it" in capsys.readouterr().err
    assert main(["eval", paths[0], data, "--labels", "alpha=alpha", "--committee", paths[1],
                 "--calibrate-on", "--no-plots", "-o", str(root / "ev_bare")]) == 2
    assert "do not name one validation file" in capsys.readouterr().err
    assert main(["eval", paths[0], data, "--calibrate-on", str(root / "valid.extxyz"),
                 "-o", str(root / "ev_bad2")]) == 2
    assert "give --committee" in capsys.readouterr().err


def test_bare_calibrate_on_takes_the_configs_validation_file():
    from types import SimpleNamespace

    from tsym.runtime.kernel import validation_file

    same = [SimpleNamespace(path=f"r{k}", data={"valid": "v.extxyz"}) for k in range(2)]
    assert validation_file(same) == "v.extxyz"
    with pytest.raises(CommitteeError, match="do not name one validation file"):
        validation_file([*same, SimpleNamespace(path="r2", data={"valid": "w.extxyz"})])


def test_predict_committee_warns_about_unseen_elements(runs, capsys):
    root, paths = runs
    write(root / "cl.extxyz", [molecule("H2O"), molecule("CH3Cl")], format="extxyz")
    capsys.readouterr()
    assert main(["predict", paths[0], str(root / "cl.extxyz"), "-o", str(root / "cl_out.extxyz"),
                 "--committee", paths[1]]) == 0
    err = capsys.readouterr().err
    assert "alpha: structure 1: element(s) Cl never seen in training" in err
    assert "structure 0: element" not in err
