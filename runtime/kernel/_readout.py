"""``KernelReadout``: a Gaussian-process readout of a plan's irreps coordinates on frozen features.

It sits beside the neural head: it reads the same :class:`~tsym.compiler.HeadPlan` (irreps,
change of basis ``Q``, level, pool, sum rule) and gives the same irreps coordinates, which the
plan's ``to_cartesian`` turns into the Cartesian tensor.  Each distinct irrep ``(l, p)`` of the
target is one GP with the covariant kernel of :mod:`._covariant` (its ``m`` copies share the
kernel and the hyperparameters, each has its own amplitude); the ``0e`` copies are fitted around
a constant (per atom for ``pool sum``).

Hyperparameters (``sigma``, the regulariser ``lam``) are chosen on the training data only, by exact
leave-one-group-out cross-validation (the sum of squared LOO residuals, i.e. the Frobenius error,
since ``Q`` has orthonormal rows) on at most ``max_select`` training groups: every ``sigma`` at
the middle ``lam``, then every ``lam`` at the best ``sigma``.  Each
copy's amplitude makes its LOO residuals unit-variance under their LOO covariances, so the
predictive variances are calibrated on the training data.  Up to ``max_exact`` groups the fit is
exact; beyond, a projected process on ``n_inducing`` environments per irrep chosen by farthest
point sampling of the invariant descriptor.

Physics clauses: ``sum_rule zero`` is kept exactly (labels and mean predictions centred per
structure; the variances are still those of the uncentred GP, not of the centred prediction);
``positive definite`` cannot be kept by a mean linear in the labels, so such a plan is refused
(:class:`KernelError`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3

from tsym.compiler import HeadPlan, compile_text
from tsym.runtime.errors import KernelError
from tsym.runtime.kernel._covariant import Environments, group_kernel, self_kernel
from tsym.runtime.kernel._features import FeatureSet
from tsym.runtime.kernel._gp import ExactGP, SparseGP, check_finite, loo

__all__ = ["KernelReadout", "SIGMAS", "LAMS"]

SIGMAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
LAMS = (1e-10, 1e-8, 1e-6, 1e-4, 1e-2)


def _farthest_points(x: torch.Tensor, m: int) -> torch.Tensor:
    """``m`` row indices of ``x`` ``[n, f]`` by farthest point sampling from row 0."""
    chosen = [0]
    dist = torch.cdist(x, x[:1]).squeeze(1)  # [n]
    for _ in range(min(m, len(x)) - 1):
        nxt = int(torch.argmax(dist))
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(x, x[nxt:nxt + 1]).squeeze(1))
    return torch.tensor(chosen)


def _float64(build):
    """``build()`` with float64 as the default dtype (e3nn computes its Clebsch-Gordan
    coefficients in it: float32 ones would break covariance at ~1e-7)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return build()
    finally:
        torch.set_default_dtype(old)


def _flat(k: torch.Tensor) -> torch.Tensor:
    """``[Ga, d, Gb, d] -> [Ga * d, Gb * d]``."""
    return k.reshape(k.shape[0] * k.shape[1], k.shape[2] * k.shape[3])


class KernelReadout:
    """A GP readout of ``plan`` on node features of irreps ``feature_irreps``.

    Parameters
    ----------
    plan : HeadPlan
    feature_irreps : str
        The backbone's node-feature irreps; every non-scalar irrep of the target must be there.
    sigmas, lams : sequences of float
        The grid of the scalar kernel's width and of the regulariser (relative to the kernel's
        mean diagonal).
    max_exact, max_select, n_inducing : int
        Exact fit up to ``max_exact`` training groups; hyperparameters on ``max_select`` of them;
        inducing environments of the sparse fit.
    seed : int
        Picks the hyperparameter subset when there are more than ``max_select`` groups.
    products : bool
        Add to each irrep's covariant channels the weightless symmetric square of the features'
        ``l = 1, 2`` channels (e3nn ``TensorSquare``), so an irrep the backbone carries only in
        few or in no channels (``4e`` from ``2e x 2e``) is spanned.
    scalars : {"global", "standard"}
        The invariant descriptor of the scalar kernel: the ``0e`` features centred and divided
        by one overall scale (the features' own metric), or each channel by its own std.

    Examples
    --------
    >>> import torch, tsym
    >>> from tsym.runtime.kernel import FeatureSet, KernelReadout
    >>> plan = tsym.compile_text("tensor mu { indices i }")[0]
    >>> fs = FeatureSet(torch.randn(6, 4 + 3 * 3, dtype=torch.float64), "4x0e+3x1o",
    ...                 torch.tensor([8, 1, 1, 8, 1, 1]), torch.tensor([3, 3]))
    >>> kr = KernelReadout(plan, "4x0e+3x1o").fit(fs, torch.randn(2, 3, dtype=torch.float64))
    >>> kr.predict(fs)["cartesian"].shape
    torch.Size([2, 3])
    """

    def __init__(self, plan: HeadPlan, feature_irreps: str, *, sigmas: Sequence[float] = SIGMAS,
                 lams: Sequence[float] = LAMS, max_exact: int = 3000, max_select: int = 1000,
                 n_inducing: int = 1000, seed: int = 0, products: bool = True,
                 scalars: str = "global"):
        if plan.positive is not None:
            raise KernelError(f"head '{plan.name}' declares 'positive {plan.positive}': a kernel "
                              "mean is linear in the labels and cannot keep it\nhint: use the "
                              "neural head for this spec")
        self.plan, self.feature_irreps = plan, str(o3.Irreps(feature_irreps))
        self.sigmas, self.lams = tuple(map(float, sigmas)), tuple(map(float, lams))
        self.max_exact, self.max_select, self.n_inducing, self.seed = (
            int(max_exact), int(max_select), int(n_inducing), int(seed))
        self.products = bool(products)
        if scalars not in ("standard", "global"):
            raise KernelError(f"scalars must be 'standard' (each 0e channel to unit variance) or "
                              f"'global' (one scale for all), got {scalars!r}")
        self.scalars = scalars
        self.sum_rule = plan.sum_rule == "zero"
        target = o3.Irreps(plan.irreps)
        self.copies: dict[str, list[list[int]]] = {}  # irrep -> component indices of each copy
        for (mul, ir), sl in zip(target, target.slices()):
            for c in range(mul):
                start = sl.start + c * ir.dim
                self.copies.setdefault(str(ir), []).append(list(range(start, start + ir.dim)))
        feats = o3.Irreps(self.feature_irreps)
        self._channels = {key: [(sl.start, mul) for (mul, ir), sl in zip(feats, feats.slices())
                                if str(ir) == key] for key in self.copies}
        self._scalars = [i for (mul, ir), sl in zip(feats, feats.slices()) if str(ir) == "0e"
                         for i in range(sl.start, sl.stop)]
        # products: the symmetric square of the l = 1, 2 channels, its parts of each irrep
        low = [(mul, ir) for mul, ir in feats if ir.l in (1, 2)]
        self._low = [i for (mul, ir), sl in zip(feats, feats.slices()) if ir.l in (1, 2)
                     for i in range(sl.start, sl.stop)]
        self._square = {}
        for key in self.copies:
            if self.products and low and key != "0e":
                square = _float64(lambda: o3.TensorSquare(o3.Irreps(low),
                                                          filter_ir_out=[o3.Irrep(key)]))
                if square.irreps_out.dim:
                    self._square[key] = square.to(torch.float64)
        missing = [k for k, ch in self._channels.items()
                   if not ch and k != "0e" and k not in self._square]
        if missing:
            raise KernelError(f"head '{plan.name}' (irreps '{plan.irreps}') needs node features "
                              f"of irreps {missing}, which the backbone's '{self.feature_irreps}'"
                              " lacks\nhint: train the backbone with those irreps in its features")
        self.fitted = False

    # ------------------------------------------------------------------ environments
    def _envs(self, fs: FeatureSet, key: str) -> Environments:
        if fs.irreps != self.feature_irreps:
            raise KernelError(f"features of irreps '{fs.irreps}' given to a kernel readout of "
                              f"'{self.feature_irreps}'")
        x, n = fs.features, fs.features.shape[0]
        ir = o3.Irrep(key)
        if key == "0e":
            h = x.new_ones(n, 1, 1)
        else:
            h = torch.cat([g / scale for g, scale in zip(self._channel_groups(x, key),
                                                           self.h_scale[key])], 1)  # [n, mult, d]
        s = (x[:, self._scalars] - self.s_mean) / self.s_std  # [n, n_s]
        s = s / math.sqrt(max(len(self._scalars), 1))
        batch = fs.batch
        if self.plan.level == "atom":
            group, n_groups = torch.arange(n), n
        else:
            group, n_groups = batch, len(fs)
        mean = self.plan.pool == "mean" and self.plan.level == "structure"
        weight = (1.0 / fs.num_atoms[batch].to(x.dtype)) if mean else x.new_ones(n)
        return Environments(h, s, fs.atomic_numbers, group, weight, n_groups)

    def _channel_groups(self, x: torch.Tensor, key: str) -> list[torch.Tensor]:
        """The covariant channels of irrep ``key``: the features' own ``[n, mult, d]`` and the
        products ``[n, mult2, d]`` (each group scaled on its own)."""
        n, d = x.shape[0], o3.Irrep(key).dim
        groups = []
        if self._channels[key]:
            groups.append(torch.cat([x[:, s:s + mul * d].reshape(n, mul, d)
                                     for s, mul in self._channels[key]], 1))
        if key in self._square:
            with torch.no_grad():
                groups.append(self._square[key](x[:, self._low]).reshape(n, -1, d))
        return groups

    def _offset_basis(self, fs: FeatureSet) -> torch.Tensor:
        """``[G or N]``: what the 0e constant is multiplied by (atoms for ``pool sum``)."""
        if self.plan.level == "structure" and self.plan.pool == "sum":
            return fs.num_atoms.to(torch.float64)
        n = fs.features.shape[0] if self.plan.level == "atom" else len(fs)
        return torch.ones(n, dtype=torch.float64)

    def _centre(self, y: torch.Tensor, fs: FeatureSet) -> torch.Tensor:
        """Atom rows ``[N, ...]`` minus their structure's mean (the sum rule)."""
        b = fs.batch
        sums = y.new_zeros((len(fs),) + y.shape[1:]).index_add_(0, b, y)
        counts = fs.num_atoms.to(y.dtype).reshape((-1,) + (1,) * (y.dim() - 1))
        return y - (sums / counts)[b]

    # ------------------------------------------------------------------ fitting
    def fit(self, fs: FeatureSet, cartesian: torch.Tensor) -> KernelReadout:
        """Fit on training features ``fs`` and Cartesian labels ``[G or N, 3, ..., 3]``."""
        y = self.plan.from_cartesian(torch.as_tensor(cartesian, dtype=torch.float64))  # [., dim]
        x = fs.features
        scal = x[:, self._scalars]
        self.s_mean = scal.mean(0)
        if self.scalars == "global":  # the features' own metric, one scale
            self.s_std = scal.var(0).mean().sqrt().clamp_min(1e-12).expand_as(self.s_mean).clone()
        else:
            self.s_std = torch.where(scal.std(0) > 1e-12, scal.std(0), torch.ones_like(self.s_mean))
        self.h_scale = {key: [float(g.pow(2).mean().sqrt().clamp_min(1e-12))
                              for g in self._channel_groups(x, key)]
                        for key in self.copies if key != "0e"}
        if self.sum_rule:
            y = self._centre(y, fs)
        basis = self._offset_basis(fs)  # [G or N]
        self.offset = torch.zeros(y.shape[1], dtype=torch.float64)
        for comps in self.copies.get("0e", []):
            if not self.sum_rule:
                self.offset[comps] = (y[:, comps[0]] / basis).mean()
        y = y - basis[:, None] * self.offset  # [., dim]
        self.elements = sorted(set(fs.atomic_numbers.tolist()))
        self.hyper, self.amp, self.gps, self.train_envs = {}, {}, {}, {}
        loo_var = None
        for key, copies in self.copies.items():
            envs = self._envs(fs, key)
            g = envs.n_groups
            ys = torch.stack([y[:, c] for c in copies], -1)  # [g, d, m]
            sel = torch.arange(g) if g <= self.max_select else torch.randperm(
                g, generator=torch.Generator().manual_seed(self.seed))[:self.max_select].sort()[0]
            sub = envs.select(sel)
            sse, sigma, lam, scale, res, cov = self._search(sub, ys[sel].reshape(-1, len(copies)))
            # amplitude per copy: LOO residuals unit-variance under their LOO covariance
            amp = torch.einsum("gam,gam->m", res, torch.linalg.solve(cov, res)) / (
                res.shape[0] * envs.dim)  # [m]
            self.hyper[key] = {"sigma": sigma, "lam": lam, "scale": scale,
                               "loo_rmse": math.sqrt(sse / len(sel))}
            self.amp[key] = amp
            var = cov.diagonal(dim1=1, dim2=2).sum(1)[:, None] * amp  # [g_sel, m]
            loo_var = var.sum(1) if loo_var is None else loo_var + var.sum(1)
            self._fit_block(key, envs, ys)
        self.loo_std = loo_var.sqrt()  # [g_sel], Frobenius std of the held-out predictions
        self.train_s, self.train_z = self._envs(fs, "0e").s, fs.atomic_numbers.clone()
        self.fitted = True
        return self

    def _search(self, sub: Environments, y: torch.Tensor) -> tuple:
        """Coordinate search of (sigma, lam) by leave-one-out SSE: every sigma at the middle
        lam, then every lam at the best sigma (one factorisation per point)."""
        kernels: dict[float, tuple[torch.Tensor, float]] = {}
        best = None

        def try_point(sigma, lam):
            nonlocal best
            if sigma not in kernels:
                k = _flat(group_kernel(sub, sub, sigma))
                kernels.clear()  # keep one [n, n] kernel in memory
                kernels[sigma] = (k, float(k.diagonal().mean().clamp_min(1e-300)))
            k, scale = kernels[sigma]
            res, cov = loo(k / scale, y, lam, sub.dim)
            sse = float(res.pow(2).sum())
            if best is None or sse < best[0]:
                best = (sse, sigma, lam, scale, res, cov)

        mid = self.lams[len(self.lams) // 2]
        for sigma in self.sigmas:
            try_point(sigma, mid)
        sigma = best[1]
        for lam in self.lams:
            if lam != mid:
                try_point(sigma, lam)
        return best

    def _fit_block(self, key: str, envs: Environments, ys: torch.Tensor) -> None:
        hp = self.hyper[key]
        sigma, lam, scale = hp["sigma"], hp["lam"], hp["scale"]
        if envs.n_groups <= self.max_exact:
            k = _flat(group_kernel(envs, envs, sigma)) / scale
            self.gps[key] = ExactGP(k, ys.reshape(-1, ys.shape[-1]), lam)
            self.train_envs[key] = envs
            return
        feat = torch.cat([envs.s, 1e3 * envs.z[:, None].to(envs.s.dtype)], 1)  # species apart
        idx = _farthest_points(feat, self.n_inducing)
        m = len(idx)
        ind = Environments(envs.h[idx], envs.s[idx], envs.z[idx], torch.arange(m),
                           envs.h.new_ones(m), m)
        k_mm = _flat(group_kernel(ind, ind, sigma)) / scale

        def chunks(step=512):
            for start in range(0, envs.n_groups, step):
                part = envs.groups_range(start, start + step)
                yield (_flat(group_kernel(ind, part, sigma)) / scale,
                       ys[start:start + step].reshape(-1, ys.shape[-1]))

        self.gps[key] = SparseGP(k_mm, chunks(), lam)
        self.train_envs[key] = ind

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(self, fs: FeatureSet, groups_per_chunk: int = 256) -> dict[str, torch.Tensor]:
        """Mean and variance for the structures of ``fs``.

        Returns
        -------
        dict
            ``irreps`` ``[G or N, dim]`` mean irreps coordinates; ``cartesian`` ``[G or N, 3, ...]``;
            ``var`` ``[G or N, dim]`` the predictive variance of each irreps coordinate (noise
            included); ``std`` ``[G or N]`` the Frobenius std, ``sqrt(sum var)`` (the expected
            ``|T_pred - T|_F`` scale, ``Q`` having orthonormal rows).
        """
        if not self.fitted:
            raise KernelError("predict before fit: call fit(features, labels) first")
        basis = self._offset_basis(fs)
        mean = basis[:, None] * self.offset  # [., dim]
        var = torch.zeros_like(mean)
        for key, copies in self.copies.items():
            envs, gp, hp = self._envs(fs, key), self.gps[key], self.hyper[key]
            train = self.train_envs[key]
            for start in range(0, envs.n_groups, groups_per_chunk):
                part = envs.groups_range(start, start + groups_per_chunk)
                k_star = _flat(group_kernel(part, train, hp["sigma"])) / hp["scale"]
                mu = gp.mean(k_star).reshape(part.n_groups, envs.dim, -1)  # [g, d, m]
                cov = gp.cov(k_star, self_kernel(part, hp["sigma"]) / hp["scale"])  # [g, d, d]
                diag = cov.diagonal(dim1=1, dim2=2).clamp_min(0.0)  # [g, d]
                rows = slice(start, start + part.n_groups)
                for c, comps in enumerate(copies):
                    mean[rows, comps] += mu[:, :, c]
                    var[rows, comps] = diag * self.amp[key][c]
        if self.sum_rule:
            mean = self._centre(mean, fs)
        check_finite(mean, f"the kernel prediction of '{self.plan.name}'")
        return {"irreps": mean, "cartesian": self.plan.to_cartesian(mean), "var": var,
                "std": var.sum(1).sqrt()}

    # ------------------------------------------------------------------ files
    def state(self) -> dict:
        """Plain tensors and values (``torch.load(weights_only=True)`` reads them)."""
        envs = {k: {"h": e.h, "s": e.s, "z": e.z, "group": e.group, "weight": e.weight,
                    "n_groups": e.n_groups} for k, e in self.train_envs.items()}
        return {"spec": self.plan.source, "name": self.plan.name,
                "spec_hash": self.plan.spec_hash, "feature_irreps": self.feature_irreps,
                "options": {"sigmas": list(self.sigmas), "lams": list(self.lams),
                            "max_exact": self.max_exact, "max_select": self.max_select,
                            "n_inducing": self.n_inducing, "seed": self.seed,
                            "products": self.products, "scalars": self.scalars},
                "s_mean": self.s_mean, "s_std": self.s_std, "h_scale": self.h_scale,
                "offset": self.offset, "elements": self.elements, "hyper": self.hyper,
                "amp": self.amp, "loo_std": self.loo_std, "train_s": self.train_s,
                "train_z": self.train_z, "envs": envs,
                "gps": {k: {"kind": type(gp).__name__, **gp.state()} for k, gp in self.gps.items()}}

    @classmethod
    def from_state(cls, state: dict, where: str = "<state>") -> KernelReadout:
        plans = [p for p in compile_text(state["spec"], f"{where}:spec") if p.name == state["name"]]
        if not plans or plans[0].spec_hash != state["spec_hash"]:
            raise KernelError(f"{where}: the stored spec no longer compiles to the same plan")
        self = cls(plans[0], state["feature_irreps"], **state["options"])
        for name in ("s_mean", "s_std", "h_scale", "offset", "elements", "hyper", "amp",
                     "loo_std", "train_s", "train_z"):
            setattr(self, name, state[name])
        self.train_envs = {k: Environments(**e) for k, e in state["envs"].items()}
        self.gps = {}
        for k, g in state["gps"].items():
            g = dict(g)
            kind = g.pop("kind")
            self.gps[k] = (ExactGP if kind == "ExactGP" else SparseGP).from_state(**g)
        self.fitted = True
        return self


