"""Issue 9: how smooth is water_gamma's target?  A Gaussian process in the monomer's internal
coordinates, on TENSOAP's split, as a yardstick (not a tsym model).

A water monomer has three internal coordinates: the two O-H lengths and the H-O-H angle.  In
the molecule's own frame (z along the angle's bisector, x in the plane from the longer towards
the shorter bond, y = z x x) the 81 components of gamma are functions of those three numbers
alone.  This script fits them with a Gaussian process (squared-exponential kernel, one length
scale in coordinates scaled to unit spread, a small jitter: the labels are noise-free quantum
chemistry), chosen by 5-fold cross-validation on the 800 training monomers only, and scores the
200 test monomers with TENSOAP's metric, sqrt(mean_s |T_pred - T|_F^2) (``published.py``).

It answers one question: is the error of tsym (and of TENSOAP) the data's or the model's?  The
script is specific to a triatomic molecule and is not part of tsym.

    TSYM_SHARED_DATA=../shared/data python benchmarks/gamma_gpr.py --out /tmp/gpr
"""
from __future__ import annotations

import argparse
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
    """Exact Gaussian-process mean: isotropic squared exponential in scaled coordinates."""

    def __init__(self, x: np.ndarray, y: np.ndarray, length: float, jitter: float,
                 centre: np.ndarray, spread: np.ndarray):
        self.centre, self.spread, self.length = centre, spread, length
        self.x = (x - centre) / spread  # [n, 3]
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
        gp = GP(x[rest], y[rest], length, jitter, x[rest].mean(0), x[rest].std(0))
        errors.append(((gp(x[part]) - y[part]) ** 2).sum(1))
    return float(np.sqrt(np.concatenate(errors).mean()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("/tmp/shared_runs"),
                   help="run_shared's output folder (the converted split is made there)")
    p.add_argument("--sizes", type=int, nargs="*", default=[],
                   help="also fit the first N training monomers (a learning curve)")
    a = p.parse_args(argv)
    root = os.environ.get("TSYM_SHARED_DATA")
    if not root:
        print("set TSYM_SHARED_DATA to the shared data folder", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_shared import convert_set

    convert_set("water_gamma_tensoap", Path(root), a.out)
    conv = a.out / "converted"
    xr, rr, tr = load(conv / "water_gamma_tensoap_train.extxyz")
    xt, rt, tt = load(conv / "water_gamma_tensoap_test.extxyz")
    yr = to_frame(tr, rr).reshape(len(xr), 81)
    intrinsic = float(np.sqrt(((tt - tt.mean(0)) ** 2).reshape(len(tt), -1).sum(1).mean()))
    for n in sorted(set(a.sizes) | {len(xr)}):
        cv = {(ls, j): cross_validate(xr[:n], yr[:n], ls, j) for ls in LENGTHS for j in JITTERS}
        ls, j = min(cv, key=cv.get)
        gp = GP(xr[:n], yr[:n], ls, j, xr[:n].mean(0), xr[:n].std(0))
        pred = from_frame(gp(xt).reshape(-1, 3, 3, 3, 3), rt)
        err = np.sqrt(((pred - tt) ** 2).reshape(len(tt), -1).sum(1))  # [S]
        rmse = float(np.sqrt((err ** 2).mean()))
        print(f"n_train {n}: length {ls} jitter {j:g} (5-fold CV {cv[ls, j]:.3f}); test "
              f"{rmse:.3f} a.u. = {100 * rmse / intrinsic:.3f} % of the intrinsic deviation "
              f"{intrinsic:.1f}; worst monomers {np.sort(err)[::-1][:3].round(2).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
