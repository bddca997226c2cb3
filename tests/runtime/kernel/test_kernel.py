"""The kernel readout: covariance under O(3), interpolation, variances, sparse == exact, files,
extrapolation flags.  All in float64 on random (generic) features unless a model is named."""
from __future__ import annotations

import pytest
import torch
from e3nn import o3

import tsym
from tsym.runtime.errors import KernelError
from tsym.runtime.equivariance import random_rotation
from tsym.runtime.kernel import (FeatureSet, KernelReadout, calibration, extract_features,
                                 extrapolation, group_kernel, load_readouts, save_readouts)

IRREPS = "6x0e+4x1o+3x1e+6x2e"  # mult >= 2l + 1 for every target irrep: a generic kernel is PD
GENERAL = "tensor t { indices ij }"  # 0e + 1e + 2e
ALPHA_MEAN = "tensor alpha { indices ij; symmetry ij = ji; pool mean }"  # 0e + 2e
BORN = "tensor z { indices ij; level atom; sum_rule zero }"


def _plan(text):
    return tsym.compile_text(text)[0]


def _features(n_struct, seed=0, z=(8, 1, 1, 6)) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(2, 5, (n_struct,), generator=g)
    n = int(counts.sum())
    numbers = torch.tensor(z)[torch.randint(0, len(z), (n,), generator=g)]
    feats = torch.randn(n, o3.Irreps(IRREPS).dim, generator=g, dtype=torch.float64)
    return FeatureSet(feats, IRREPS, numbers, counts)


def _labels(plan, fs, seed=1):
    """Smooth labels: a fixed random covariant linear map of the features, pooled as the plan."""
    g = torch.Generator().manual_seed(seed)
    lin = o3.Linear(IRREPS, plan.irreps).to(torch.float64)
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        node = lin(fs.features * torch.tanh(fs.features[:, :1]))  # [N, dim], covariant
    if plan.level == "atom":
        y = node
    else:
        y = torch.zeros(len(fs), node.shape[1], dtype=torch.float64).index_add_(0, fs.batch, node)
        if plan.pool == "mean":
            y = y / fs.num_atoms[:, None]
    return plan.to_cartesian(y)


class _Orthogonal:
    """A random rotation, or a rotation times -1 (a reflection), with exact float64 Wigner
    matrices.  e3nn's ``D_from_angles`` agrees with ``angles_to_matrix`` only to ~1e-7 in float64
    (float32 constants), so ``d`` builds them from the Cartesian matrix through tsym's exact
    changes of basis: ``D = Q (R x ... x R) Q^T`` (a sign choice of a basis row cancels)."""

    def __init__(self, seed, reflect):
        self.matrix = random_rotation(torch.float64, torch.Generator().manual_seed(seed),
                                      proper=not reflect)  # [3, 3]

    def _block(self, ir: o3.Irrep) -> torch.Tensor:
        r = self.matrix
        det = torch.linalg.det(r)
        if ir.l == 0:
            m = torch.ones(1, 1, dtype=torch.float64)
        elif ir.l == 1:
            m = r * det  # axial form; times det again below for a polar vector
        else:
            q = _plan("tensor s { indices ij; symmetry ij = ji; traceless ij }").change_of_basis
            m = torch.einsum("aij,ik,jl,bkl->ab", q, r, r, q)  # 2e: [5, 5]
        parity = 1.0 if ((-1) ** ir.l == ir.p) else -1.0  # e3nn: polar when p == (-1)^l
        intrinsic = 1.0 if ir.l != 1 else float(det)  # undo the det of the l = 1 form
        return m * intrinsic * (float(det) if parity < 0 else 1.0)

    def d(self, irreps) -> torch.Tensor:
        return torch.block_diag(*[self._block(ir) for mul, ir in o3.Irreps(irreps)
                                  for _ in range(mul)])  # [dim, dim]


def _transform(fs: FeatureSet, g: _Orthogonal) -> FeatureSet:
    return FeatureSet(fs.features @ g.d(IRREPS).T, fs.irreps, fs.atomic_numbers, fs.num_atoms)


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
@pytest.mark.parametrize("spec", [GENERAL, ALPHA_MEAN, BORN], ids=["sum", "mean", "atom"])
def test_kernel_and_readout_are_covariant(spec, reflect):
    plan = _plan(spec)
    fs, g = _features(12), _Orthogonal(3, reflect)
    r = g.matrix
    kr = KernelReadout(plan, IRREPS, sigmas=(1.0,), lams=(1e-6,)).fit(fs, _labels(plan, fs))
    test = _features(5, seed=7)
    for key in kr.copies:  # the group kernel itself: K(gA, gB) = D(g) K(A, B) D(g)^T
        a, b = kr._envs(test, key), kr.train_envs[key]
        ga = kr._envs(_transform(test, g), key)
        dg = g.d(key)  # [d, d]
        k, kg = group_kernel(a, b, 1.0), group_kernel(ga, b, 1.0)  # [Ga, d, Gb, d]
        assert torch.allclose(kg, torch.einsum("ab,xbyc->xayc", dg, k), atol=1e-12 * k.abs().max())
    p, pg = kr.predict(test), kr.predict(_transform(test, g))
    d_out = g.d(plan.irreps)
    scale = p["irreps"].abs().max()
    assert torch.allclose(pg["irreps"], p["irreps"] @ d_out.T, atol=1e-10 * scale)
    assert torch.allclose(pg["std"], p["std"], rtol=1e-10)  # the std is invariant
    # the same in Cartesian form: T(gA) = g . T(A) on both indices (polar tensor)
    assert torch.allclose(pg["cartesian"], torch.einsum("ia,jb,nab->nij", r, r, p["cartesian"]),
                          atol=1e-10 * scale)


def test_sum_rule_is_exact():
    plan = _plan(BORN)
    fs = _features(10)
    pred = KernelReadout(plan, IRREPS, sigmas=(1.0,), lams=(1e-6,)).fit(
        fs, _labels(plan, fs)).predict(_features(4, seed=5))["cartesian"]  # [N, 3, 3]
    test = _features(4, seed=5)
    sums = torch.zeros(4, 3, 3, dtype=torch.float64).index_add_(0, test.batch, pred)
    assert sums.abs().max() <= 1e-12 * pred.abs().max()


def test_reproduces_training_labels_as_the_regulariser_vanishes():
    plan = _plan(GENERAL)
    fs = _features(15)
    y = _labels(plan, fs)
    errors = []
    for lam in (1e-4, 1e-7, 1e-10):
        kr = KernelReadout(plan, IRREPS, sigmas=(1.0,), lams=(lam,)).fit(fs, y)
        errors.append(float((kr.predict(fs)["cartesian"] - y).abs().max() / y.abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6  # lam 1e-10 of the kernel's mean diagonal, condition << 1e4


def test_variance_small_at_training_points_and_grows_away():
    plan = _plan(GENERAL)
    fs = _features(15)
    kr = KernelReadout(plan, IRREPS, sigmas=(1.0,), lams=(1e-8,)).fit(fs, _labels(plan, fs))
    stds = []
    for shift in (0.0, 0.5, 2.0, 8.0):  # move the invariant features away from training
        f = fs.features.clone()
        f[:, :6] += shift
        stds.append(kr.predict(FeatureSet(f, IRREPS, fs.atomic_numbers, fs.num_atoms))["std"])
    assert all(bool((b > a).all()) for a, b in zip(stds, stds[1:]))
    assert float(stds[0].max()) < 1e-2 * float(stds[-1].min())


def test_sparse_equals_exact_when_every_environment_is_inducing():
    plan = _plan(ALPHA_MEAN)
    fs, test = _features(10), _features(4, seed=9)
    y = _labels(plan, fs)
    opts = dict(sigmas=(1.0,), lams=(1e-4,))
    exact = KernelReadout(plan, IRREPS, **opts).fit(fs, y)
    sparse = KernelReadout(plan, IRREPS, max_exact=0, n_inducing=10 ** 6, **opts).fit(fs, y)
    assert type(sparse.gps["2e"]).__name__ == "SparseGP"
    assert len(sparse.train_envs["2e"]) == fs.features.shape[0]
    pe, ps = exact.predict(test), sparse.predict(test)
    assert torch.allclose(ps["irreps"], pe["irreps"], atol=1e-7 * pe["irreps"].abs().max())
    assert torch.allclose(ps["var"], pe["var"], atol=1e-7 * pe["var"].max())


def test_sparse_fewer_inducing_points_still_interpolates():
    plan = _plan(ALPHA_MEAN)
    fs = _features(40)
    y = _labels(plan, fs)
    kr = KernelReadout(plan, IRREPS, max_exact=0, n_inducing=60, sigmas=(1.0,), lams=(1e-6,))
    pred = kr.fit(fs, y).predict(fs)
    assert len(kr.train_envs["2e"]) == 60
    rel = float(((pred["cartesian"] - y) ** 2).sum() / (y - y.mean(0)).pow(2).sum())
    assert rel < 0.5  # a projection on 60 of ~120 environments explains most of the labels


def test_save_load_round_trip(tmp_path):
    plans = [_plan(GENERAL), _plan(BORN)]
    fs, test = _features(8), _features(3, seed=4)
    fitted = {p.name: KernelReadout(p, IRREPS, sigmas=(0.5, 1.0), lams=(1e-6,)).fit(
        fs, _labels(p, fs)) for p in plans}
    save_readouts(fitted, tmp_path / "kernel.pt")
    loaded = load_readouts(tmp_path / "kernel.pt")
    assert sorted(loaded) == sorted(fitted)
    for name, kr in fitted.items():
        a, b = kr.predict(test), loaded[name].predict(test)
        assert torch.equal(a["irreps"], b["irreps"]) and torch.equal(a["var"], b["var"])
        assert loaded[name].hyper == kr.hyper


def test_load_refuses_other_files(tmp_path):
    torch.save({"a": 1}, tmp_path / "x.pt")
    with pytest.raises(KernelError, match=r"^.*x\.pt: not a tsym kernel file"):
        load_readouts(tmp_path / "x.pt")
    with pytest.raises(KernelError, match=r"^.*missing\.pt: no such kernel file"):
        load_readouts(tmp_path / "missing.pt")


def test_extrapolation_flags_unseen_elements_and_far_structures():
    plan = _plan(GENERAL)
    fs = _features(30, z=(8, 1))
    kr = KernelReadout(plan, IRREPS, sigmas=(4.0,), lams=(1e-8,)).fit(fs, _labels(plan, fs))
    quiet = extrapolation(kr, fs, kr.predict(fs)["std"])
    assert quiet["messages"] == [] and quiet["std_beyond"] == []
    test = fs.subset([0, 1, 2])
    f, z = test.features.clone(), test.atomic_numbers.clone()
    z[0] = 17  # a Cl atom in structure 0
    far = slice(int(test.num_atoms[0]), int(test.num_atoms[:2].sum()))
    f[far, :6] += 200.0  # structure 1 far from every training environment
    test = FeatureSet(f, IRREPS, z, test.num_atoms)
    out = extrapolation(kr, test, kr.predict(test)["std"])
    assert out["unseen_elements"] == {0: ["Cl"]}
    assert 1 in out["distance_beyond"] and 1 in out["std_beyond"] and 2 not in out["std_beyond"]
    assert any(m.startswith("structure 0: element(s) Cl never seen") for m in out["messages"])


def test_refuses_positive_plans_and_missing_irreps():
    with pytest.raises(KernelError, match=r"^head 'c' declares 'positive definite'"):
        KernelReadout(_plan("tensor c { indices ij; symmetry ij = ji; positive definite }"),
                      IRREPS)
    with pytest.raises(KernelError, match=r"^head 'g' \(irreps '.*'\) needs node features of "
                                          r"irreps \['4e'\]"):
        KernelReadout(_plan("tensor g { indices ijkl; symmetry ijkl = jikl = ijlk = klij }"),
                      "4x0e+2x1o")  # the products of 1o reach 2e, not 4e


def test_calibration_counts_intervals():
    # unit variances and errors 0.5, 1.5, 2.5 per component: 1/3 inside 68 %, 2/3 inside 95 %
    err = torch.tensor([[0.5], [1.5], [2.5]], dtype=torch.float64)
    pred = {"irreps": err, "var": torch.ones(3, 1, dtype=torch.float64),
            "std": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)}
    cal = calibration(pred, torch.zeros(3, 1, dtype=torch.float64), worst=1)
    assert cal["coverage_68"] == pytest.approx(1 / 3) and cal["coverage_95"] == pytest.approx(2 / 3)
    assert cal["spearman"] == pytest.approx(1.0)
    assert cal["worst"] == [{"index": 2, "error": 2.5, "std": 3.0, "std_rank": 1}]


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_end_to_end_on_a_model_is_equivariant(reflect):
    """Features of a (float64, untrained) XPaiNN: rotating or reflecting the molecules rotates
    the kernel readout's polarizability, T -> R T R^T."""
    from ase.build import molecule

    spec = "tensor alpha { indices ij; symmetry ij = ji }"
    model = tsym.build_model([spec], dtype=torch.float64, seed=0, backbone_kwargs=dict(
        num_scalars=8, irreps="8x0e+4x1o+6x2e", num_blocks=1))
    mols = [molecule(n) for n in ("H2O", "NH3", "CH4", "CH3OH", "H2O2", "C2H4")]
    fs = extract_features(model, mols)
    plan = model.plans[0]
    y = torch.stack([torch.as_tensor(m.get_moments_of_inertia()).diag() for m in mols])
    kr = KernelReadout(plan, fs.irreps, sigmas=(1.0,), lams=(1e-6,)).fit(fs, y)
    r = _Orthogonal(5, reflect).matrix
    moved = [m.copy() for m in mols[:3]]
    for m in moved:
        m.positions = m.positions @ r.numpy().T
    p, pg = kr.predict(fs.subset([0, 1, 2])), kr.predict(extract_features(model, moved))
    assert torch.allclose(pg["cartesian"], r @ p["cartesian"] @ r.T,
                          atol=1e-9 * p["cartesian"].abs().max())
