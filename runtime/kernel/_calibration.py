"""Is a kernel readout's uncertainty honest, and where does it extrapolate?

:func:`calibration` compares predicted variances with errors: the coverage of the 68 % and 95 %
Gaussian intervals **per irreps coordinate** (``|error| <= z * std`` for each component of each
output), the Spearman rank correlation between each output's Frobenius error and its Frobenius
std, and the worst-predicted outputs with their std.  :func:`extrapolation` names the elements
never seen in training and the outputs whose std, or whose nearest training environment in the
invariant descriptor, lies beyond the training set's own range.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from ase.data import chemical_symbols
from scipy.stats import norm, spearmanr

from tsym.runtime.kernel._features import FeatureSet

__all__ = ["calibration", "calibration_plot", "extrapolation"]


def calibration(pred: dict, true_irreps: torch.Tensor, worst: int = 5) -> dict:
    """Calibration figures of a prediction (:meth:`KernelReadout.predict`) against labels.

    Parameters
    ----------
    pred : dict
        ``irreps`` ``[n, dim]``, ``var`` ``[n, dim]``, ``std`` ``[n]``.
    true_irreps : torch.Tensor
        ``[n, dim]`` the labels' irreps coordinates (``plan.from_cartesian``).

    Returns
    -------
    dict
        ``coverage_68``, ``coverage_95`` (fractions of components), ``spearman`` (Frobenius
        error vs std), ``rmse`` (Frobenius, sqrt of the mean squared per output),
        ``worst``: ``[{index, error, std, std_rank}]`` (``std_rank`` 1 = the largest std).
    """
    diff = (pred["irreps"] - true_irreps).numpy()  # [n, dim]
    sd = pred["var"].clamp_min(1e-300).sqrt().numpy()  # [n, dim]
    z = np.abs(diff) / sd
    err = np.sqrt((diff ** 2).sum(1))  # [n]
    std = pred["std"].numpy()
    rank = np.empty(len(std), dtype=int)
    rank[np.argsort(-std)] = np.arange(1, len(std) + 1)
    order = np.argsort(-err)[:worst]
    rho = float(spearmanr(err, std).statistic) if len(err) > 2 else float("nan")
    return {"coverage_68": float((z <= norm.ppf(0.84)).mean()),
            "coverage_95": float((z <= norm.ppf(0.975)).mean()),
            "spearman": rho, "rmse": float(np.sqrt((err ** 2).mean())),
            "mean_std": float(np.sqrt((std ** 2).mean())),
            "worst": [{"index": int(i), "error": float(err[i]), "std": float(std[i]),
                       "std_rank": int(rank[i])} for i in order]}


def calibration_plot(pred: dict, true_irreps: torch.Tensor, path: str | os.PathLike,
                     title: str = "") -> str:
    """A PNG: observed vs nominal coverage (per component), and Frobenius error vs std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diff = (pred["irreps"] - true_irreps).numpy()
    z = np.abs(diff) / pred["var"].clamp_min(1e-300).sqrt().numpy()
    levels = np.linspace(0.01, 0.99, 50)
    observed = [(z <= norm.ppf(0.5 + q / 2)).mean() for q in levels]
    err, std = np.sqrt((diff ** 2).sum(1)), pred["std"].numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4))
    a.plot(levels, observed, label="observed")
    a.plot([0, 1], [0, 1], "k--", lw=0.8, label="ideal")
    a.set(xlabel="nominal coverage", ylabel="observed coverage (components)", title=title)
    a.legend()
    b.loglog(std, err, ".", ms=4)
    lo, hi = min(std.min(), err.min() + 1e-12), max(std.max(), err.max())
    b.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    b.set(xlabel="predicted Frobenius std", ylabel="Frobenius error")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _nearest(x: torch.Tensor, zx: torch.Tensor, y: torch.Tensor, zy: torch.Tensor,
             skip_self: bool = False, chunk: int = 2048) -> torch.Tensor:
    """``[n_x]`` distance from each row of ``x`` to the nearest row of ``y`` of the same element."""
    out = []
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start:start + chunk], y)  # [c, n_y]
        d = d.masked_fill(zx[start:start + chunk, None] != zy[None, :], float("inf"))
        if skip_self:
            idx = torch.arange(start, min(start + chunk, len(x)))
            d[idx - start, idx] = float("inf")
        out.append(d.min(1).values)
    return torch.cat(out) if out else x.new_zeros(0)


def extrapolation(readout, fs: FeatureSet, std: torch.Tensor) -> dict:
    """Where ``fs`` lies outside the training set of ``readout``.

    Returns
    -------
    dict
        ``unseen_elements`` ``{output index: [element symbols]}``; ``std_beyond``: outputs whose
        std exceeds the largest leave-one-out std of the training set (``std_limit``);
        ``distance_beyond``: outputs with an atom whose nearest training environment (same
        element, invariant descriptor) is farther than any training environment's nearest
        neighbour (``distance_limit``); ``messages``: one line per flagged output.
    """
    atom_level = readout.plan.level == "atom"
    group = torch.arange(fs.features.shape[0]) if atom_level else fs.batch
    n_groups = fs.features.shape[0] if atom_level else len(fs)
    seen = set(readout.elements)
    unseen: dict[int, list[str]] = {}
    for g, z in zip(group.tolist(), fs.atomic_numbers.tolist()):
        if z not in seen and chemical_symbols[z] not in unseen.setdefault(g, []):
            unseen[g].append(chemical_symbols[z])
    unseen = {g: v for g, v in unseen.items() if v}
    std_limit = float(readout.loo_std.max())
    std_beyond = [int(g) for g in torch.nonzero(std > std_limit).flatten()]
    train_s, train_z = readout.train_s, readout.train_z
    limit = float(_nearest(train_s, train_z, train_s, train_z, skip_self=True)
                  .nan_to_num(posinf=0.0).max()) if len(train_s) > 1 else 0.0
    s = readout._envs(fs, "0e").s
    dist = _nearest(s, fs.atomic_numbers, train_s, train_z)  # [N], inf for unseen elements
    far = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, group, (dist > limit).double()) > 0
    distance_beyond = [int(g) for g in torch.nonzero(far).flatten()]
    what = "atom" if atom_level else "structure"
    messages = [f"{what} {g}: element(s) {', '.join(v)} never seen in training"
                for g, v in sorted(unseen.items())]
    messages += [f"{what} {g}: predicted std {float(std[g]):.4g} beyond the training set's "
                 f"largest leave-one-out std {std_limit:.4g}" for g in std_beyond]
    messages += [f"{what} {g}: an environment farther from the training set than any training "
                 f"environment from its neighbour (descriptor distance > {limit:.3g})"
                 for g in distance_beyond if g not in unseen]
    return {"unseen_elements": unseen, "std_beyond": std_beyond, "std_limit": std_limit,
            "distance_beyond": distance_beyond, "distance_limit": limit, "messages": messages}
