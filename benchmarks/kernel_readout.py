"""Issue 24: a kernel (GP) readout on a trained tsym model's frozen node features.

``gamma RUN``: water_gamma_tensoap on TENSOAP's split (train frames 0-799, test 800-999, metric
sqrt(mean_s |T_pred - T|_F^2)).  Fits :class:`tsym.runtime.kernel.KernelReadout` on the frozen
features of ``RUN/best.pt`` for all 800 training monomers (hyperparameters by exact
leave-one-out on them only), scores the 200 test monomers, and prints the calibration of the
predicted std, the std rank of test monomers 130 and 117, and the neural head's own score::

    TSYM_SHARED_DATA=/work/shared/data OMP_NUM_THREADS=1 python benchmarks/kernel_readout.py \\
        gamma /tmp/kern/g/runs/water_gamma_tensoap__kern --data /tmp/kern/g/converted \\
        --png benchmarks/figures/kernel_gamma_calibration.png

``timing``: fit time and peak memory (max RSS of a fresh process) of exact and sparse fits on
synthetic structures of 3 atoms with ``32x0e+16x1o+16x2e`` features and a polarizability-like
target (``0e+2e``), at 1,000 and 10,000 structures::

    OMP_NUM_THREADS=1 python benchmarks/kernel_readout.py timing --sizes 1000 10000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

KEY = "second_hyperpolarizability"


def _read(path: Path):
    from ase.io import read

    atoms = read(path, ":")
    return atoms, torch.tensor(np.array([a.info[KEY] for a in atoms]), dtype=torch.float64
                               ).reshape(len(atoms), 3, 3, 3, 3)


def gamma(a) -> int:
    import tsym
    from tsym.runtime.kernel import (KernelReadout, calibration, calibration_plot,
                                     extract_features, extrapolation, save_readouts)

    model = tsym.build_model(checkpoint=Path(a.run) / "best.pt")
    train, t_train = _read(Path(a.data) / "water_gamma_tensoap_train.extxyz")
    test, t_test = _read(Path(a.data) / "water_gamma_tensoap_test.extxyz")
    plan = {p.name: p for p in model.model.plans}[KEY]
    t0 = time.perf_counter()
    f_train, f_test = extract_features(model, train), extract_features(model, test)
    t1 = time.perf_counter()
    grid = {"lams": a.lams} if a.lams else {}
    kr = KernelReadout(plan, f_train.irreps, scalars=a.scalars, **grid).fit(f_train, t_train)
    t2 = time.perf_counter()
    pred = kr.predict(f_test)
    t3 = time.perf_counter()
    if a.save:
        save_readouts({KEY: kr}, a.save)
    neural = torch.as_tensor(model.predict(test)[KEY], dtype=torch.float64)
    err = lambda p: float(((p - t_test) ** 2).reshape(len(test), -1).sum(1).mean().sqrt())
    cal = calibration(pred, plan.from_cartesian(t_test))
    rank = torch.empty(len(test), dtype=torch.long)
    rank[torch.argsort(-pred["std"])] = torch.arange(1, len(test) + 1)
    print(f"features {f_train.irreps}: extraction {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, "
          f"predict {t3 - t2:.1f} s")
    for key, hp in kr.hyper.items():
        print(f"  {key}: sigma {hp['sigma']}, lam {hp['lam']:g}, LOO RMSE {hp['loo_rmse']:.4f}, "
              f"amplitude {[round(float(x), 4) for x in kr.amp[key]]}")
    print(f"kernel readout: test {err(pred['cartesian']):.4f} a.u. (TENSOAP 0.457); "
          f"neural head of the same run: {err(neural):.4f} a.u.")
    print(f"calibration: coverage 68 % {cal['coverage_68']:.3f}, 95 % {cal['coverage_95']:.3f}; "
          f"Spearman(error, std) {cal['spearman']:.3f}; RMS predicted std {cal['mean_std']:.4f}")
    print("worst test monomers: " + "; ".join(
        f"#{w['index']} error {w['error']:.3f} std {w['std']:.3f} (std rank {w['std_rank']})"
        for w in cal["worst"]))
    print(f"std rank of test monomers 130 and 117 (1 = largest of 200): {int(rank[130])}, "
          f"{int(rank[117])}")
    ext = extrapolation(kr, f_test, pred["std"])
    print(f"extrapolation flags: {len(ext['messages'])}; " + " | ".join(ext["messages"][:6]))
    if a.png:
        print("plot:", calibration_plot(pred, plan.from_cartesian(t_test), a.png,
                                        "water_gamma, kernel readout, test"))
    if a.json:
        Path(a.json).write_text(json.dumps({"test": err(pred["cartesian"]), "neural": err(neural),
                                            "hyper": kr.hyper, "calibration": cal}, indent=1))
    return 0


def _synthetic(n: int, seed: int = 0):
    from tsym.runtime.kernel import FeatureSet

    g = torch.Generator().manual_seed(seed)
    irreps = "32x0e+16x1o+16x2e"
    feats = torch.randn(3 * n, 32 + 48 + 80, generator=g, dtype=torch.float64)
    return FeatureSet(feats, irreps, torch.tensor([8, 1, 1] * n), torch.full((n,), 3)), \
        torch.randn(n, 3, 3, generator=g, dtype=torch.float64)


def timing_one(n: int, sparse: bool) -> int:
    import tsym
    from tsym.runtime.kernel import KernelReadout

    plan = tsym.compile_text("tensor alpha { indices ij; symmetry ij = ji }")[0]
    fs, y = _synthetic(n)
    y = (y + y.transpose(1, 2)) / 2
    t0 = time.perf_counter()
    kr = KernelReadout(plan, fs.irreps, sigmas=(1.0,), lams=(1e-4,), max_select=1000,
                       max_exact=0 if sparse else 10 ** 9, n_inducing=500).fit(fs, y)
    t1 = time.perf_counter()
    kr.predict(fs.subset(range(200)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"n": n, "sparse": sparse, "fit_s": t1 - t0, "max_rss_mb": rss}))
    return 0


def timing(a) -> int:
    for n in a.sizes:
        for sparse in (False, True):
            if not sparse and n > a.max_exact:
                continue
            out = subprocess.run([sys.executable, __file__, "_one", str(n), str(int(sparse))],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{n:>6} structures, {'sparse (500 inducing)' if sparse else 'exact':<22}: "
                  f"fit {r['fit_s']:.1f} s, peak RSS {r['max_rss_mb']:.0f} MB", flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gamma")
    g.add_argument("run")
    g.add_argument("--data", default="/tmp/kern/g/converted")
    g.add_argument("--png", default=None)
    g.add_argument("--json", default=None)
    g.add_argument("--save", default=None, help="write the kernel file here")
    g.add_argument("--scalars", default="global", choices=("standard", "global"))
    g.add_argument("--lams", type=float, nargs="+", default=None, help="regulariser grid")
    t = sub.add_parser("timing")
    t.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    t.add_argument("--max-exact", type=int, default=3000)
    o = sub.add_parser("_one")
    o.add_argument("n", type=int)
    o.add_argument("sparse", type=int)
    a = p.parse_args(argv)
    if a.cmd == "gamma":
        return gamma(a)
    if a.cmd == "timing":
        return timing(a)
    return timing_one(a.n, bool(a.sparse))


if __name__ == "__main__":
    sys.exit(main())
