"""Issue 9: how smooth is water_gamma's target?  A Gaussian process in the monomer's internal
coordinates, on TENSOAP's split, as a yardstick (not a tsym model).

A water monomer has three internal coordinates: the two O-H lengths and the H-O-H angle.  In
the molecule's own frame (z along the angle's bisector, x in the plane from the longer towards
the shorter bond, y = z x x) the 81 components of gamma are functions of those three numbers
alone.  This script fits them with a Gaussian process (squared-exponential kernel, one length
scale in coordinates scaled to unit spread, a small jitter: the labels are noise-free quantum
chemistry), chosen by 5-fold cross-validation on the 800 training monomers only, and scores the
200 test monomers with TENSOAP's metric, sqrt(mean_s |T_pred - T|_F^2) (``published.py``).

It answers one question: is the error of tsym (and of TENSOAP) the data's or the model's?  With
``--mlp SEED ...`` it also fits the same 3 -> 81 map with a plain multilayer perceptron (3 hidden
layers of 64, SiLU, float64; AdamW with weight decay 0.05 for 1,500 epochs of batches of 32 on a
cosine schedule, then 300 full-batch L-BFGS iterations, tsym's two phases), which tells a neural
network's interpolation apart from the graph network's representation.  The script is specific
to a triatomic molecule and is not part of tsym.

    TSYM_SHARED_DATA=../shared/data python -m benchmarks.gamma_gpr --out /tmp/gpr --mlp 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

KEY = "second_hyperpolarizability"
LENGTHS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
JITTERS = (1e-10, 1e-8, 1e-6)


def frame(positions: np.ndarray, symbols: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(r_short, r_long, angle) [3] and the rows of the molecular frame R [3, 3] (det +1)."""
    o = symbols.index("O")
    v = [positions[h] - positions[o] for h in range(3) if h != o]  # 2 x [3]
    v.sort(key=np.linalg.norm)
    r = [float(np.linalg.norm(x)) for x in v]
    u = [x / n for x, n in zip(v, r)]
    angle = float(np.arccos(np.clip(u[0] @ u[1], -1.0, 1.0)))
    z = (u[0] + u[1]) / np.linalg.norm(u[0] + u[1])
    x = u[0] - u[1] - ((u[0] - u[1]) @ z) * z
    x /= np.linalg.norm(x)
    return np.array([r[0], r[1], angle]), np.stack([x, np.cross(z, x), z])


def to_frame(t: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Cartesian [.., 3, 3, 3, 3] in the lab frame -> the molecular frame (``rot`` [.., 3, 3])."""
    return np.einsum("...ai,...bj,...ck,...dl,...ijkl->...abcd", rot, rot, rot, rot, t)


def from_frame(t: np.ndarray, rot: np.ndarray) -> np.ndarray:
    return np.einsum("...ai,...bj,...ck,...dl,...abcd->...ijkl", rot, rot, rot, rot, t)


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Internal coordinates [S, 3], frames [S, 3, 3], Cartesian gamma [S, 3, 3, 3, 3]."""
    from ase.io import read

    xs, rots, ts = [], [], []
    for atoms in read(path, ":"):
        x, rot = frame(atoms.positions, atoms.get_chemical_symbols())
        xs.append(x)
        rots.append(rot)
        ts.append(np.asarray(atoms.info[KEY], dtype=float).reshape(3, 3, 3, 3))
    return np.array(xs), np.array(rots), np.array(ts)


class GP:
    """Exact Gaussian-process mean: isotropic squared exponential in coordinates scaled to the
    training points' mean and spread."""

    def __init__(self, x: np.ndarray, y: np.ndarray, length: float, jitter: float):
        self.centre, self.spread, self.length = x.mean(0), x.std(0), length
        self.x = (x - self.centre) / self.spread  # [n, 3]
        self.mean = y.mean(0)  # [81]
        k = self._kernel(self.x, self.x) + jitter * np.eye(len(x))
        self.weights = np.linalg.solve(k, y - self.mean)  # [n, 81]

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = (((a[:, None, :] - b[None, :, :]) / self.length) ** 2).sum(-1)
        return np.exp(-0.5 * d2)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._kernel((x - self.centre) / self.spread, self.x) @ self.weights + self.mean


def cross_validate(x, y, length, jitter, folds=5, seed=0) -> float:
    """RMS Frobenius error of the held-out folds (training set only)."""
    order = np.random.default_rng(seed).permutation(len(x))
    errors = []
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        gp = GP(x[rest], y[rest], length, jitter)
        errors.append(((gp(x[part]) - y[part]) ** 2).sum(1))
    return float(np.sqrt(np.concatenate(errors).mean()))


def mlp_fit(x, y, xt, seed: int, epochs: int = 1500, iterations: int = 300) -> np.ndarray:
    """An MLP's prediction at ``xt`` [S, 81], trained on ``x`` [n, 3] -> ``y`` [n, 81]."""
    import torch

    torch.manual_seed(seed)
    centre, spread, mean, scale = x.mean(0), x.std(0), y.mean(0), y.std()
    xs, ys = torch.tensor((x - centre) / spread), torch.tensor((y - mean) / scale)
    width, silu = 64, torch.nn.SiLU
    net = torch.nn.Sequential(torch.nn.Linear(3, width), silu(), torch.nn.Linear(width, width),
                              silu(), torch.nn.Linear(width, width), silu(),
                              torch.nn.Linear(width, y.shape[1])).double()
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        order = torch.randperm(len(xs))
        for start in range(0, len(xs), 32):
            batch = order[start:start + 32]
            opt.zero_grad()
            ((net(xs[batch]) - ys[batch]) ** 2).mean().backward()
            opt.step()
        schedule.step()
    lbfgs = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=20, history_size=50,
                              tolerance_grad=0.0, tolerance_change=0.0,
                              line_search_fn="strong_wolfe")

    def closure():
        lbfgs.zero_grad()
        loss = ((net(xs) - ys) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(iterations):
        lbfgs.step(closure)
    with torch.no_grad():
        return net(torch.tensor((xt - centre) / spread)).numpy() * scale + mean


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/shared_runs"),
                   help="run_shared's output folder (the converted split is made there)")
    p.add_argument("--sizes", type=int, nargs="*", default=[],
                   help="also fit the first N training monomers (a learning curve)")
    p.add_argument("--mlp", type=int, nargs="*", default=[], metavar="SEED",
                   help="also train an MLP on the same coordinates with each seed (minutes each)")
    p.add_argument("--json", type=Path, default=None,
                   help="write {label: {n_train: test figure}} for published.py plot --yardstick")
    a = p.parse_args(argv)
    root = os.environ.get("TSYM_SHARED_DATA")
    if not root:
        print("set TSYM_SHARED_DATA to the shared data folder", file=sys.stderr)
        return 2
    from benchmarks.run_shared import convert_set

    convert_set("water_gamma_tensoap", Path(root), a.out)
    conv = a.out / "converted"
    xr, rr, tr = load(conv / "water_gamma_tensoap_train.extxyz")
    xt, rt, tt = load(conv / "water_gamma_tensoap_test.extxyz")
    yr = to_frame(tr, rr).reshape(len(xr), 81)
    intrinsic = float(np.sqrt(((tt - tt.mean(0)) ** 2).reshape(len(tt), -1).sum(1).mean()))
    curve = {}
    for n in sorted(set(a.sizes) | {len(xr)}):
        cv = {(ls, j): cross_validate(xr[:n], yr[:n], ls, j) for ls in LENGTHS for j in JITTERS}
        ls, j = min(cv, key=cv.get)
        gp = GP(xr[:n], yr[:n], ls, j)
        pred = from_frame(gp(xt).reshape(-1, 3, 3, 3, 3), rt)
        print(f"GP, n_train {n}: length {ls} jitter {j:g} (5-fold CV {cv[ls, j]:.3f}); "
              + _score(pred, tt, intrinsic))
        curve[n] = float(np.sqrt((_errors(pred, tt) ** 2).mean()))
    if a.json:
        a.json.write_text(json.dumps({"Gaussian process, internal coords (not tsym)": curve}))
    preds = []
    for seed in a.mlp:
        preds.append(from_frame(mlp_fit(xr, yr, xt, seed).reshape(-1, 3, 3, 3, 3), rt))
        print(f"MLP, seed {seed}: " + _score(preds[-1], tt, intrinsic), flush=True)
    if len(preds) > 1:
        print(f"MLP, the mean prediction of {len(preds)} seeds: "
              + _score(np.mean(preds, axis=0), tt, intrinsic))
    return 0


def _errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """|T_pred - T|_F per monomer [S]; TENSOAP's figure is sqrt(mean(errors ** 2))."""
    return np.sqrt(((pred - true) ** 2).reshape(len(true), -1).sum(1))


def _score(pred: np.ndarray, true: np.ndarray, intrinsic: float) -> str:
    err = _errors(pred, true)  # [S]
    rmse = float(np.sqrt((err ** 2).mean()))
    return (f"test {rmse:.3f} a.u. = {100 * rmse / intrinsic:.3f} % of the intrinsic deviation "
            f"{intrinsic:.1f}; worst monomers {np.sort(err)[::-1][:3].round(2).tolist()}")


if __name__ == "__main__":
    sys.exit(main())
