"""Issue 9: tsym against published models, on their own splits and metrics; learning curves.

Three shared data sets have a published model scored on the same data, split and metric:

* ``water_apt``: APTNN (Schienbein, JCTC 2023), 0.0202 e with 27 + 3 training frames (5 / 10 /
  20 frames: 0.0424, 0.0324, 0.0230).  Metric: RMSE over all atoms of test.xyz and all 9
  components (``rmse`` of ``test_metrics.json``).
* ``becs_epsilon_e3nn``: the e3nn-models BEC notebook, MAE 0.107 e on 100 held-out crystals.
  Metric: mean |Z_pred - Z_DFT| over all atoms of the 100 crystals and 9 components (``mae``).
* ``water_gamma_tensoap``: SA-GPR/TENSOAP README example 9, 0.457 a.u. = 0.25 % of the intrinsic
  deviation, train 0-799, test 800-999.  Metric: sqrt(mean_s |T_pred - T|_F^2) over the 200 test
  monomers (``norm_rmse``); the intrinsic deviation is sqrt(mean_s |T - <T>_test|_F^2) = 183.1.

TENSOAP's per-L figures (``sagpr_utils.do_sagpr_spherical``) are also given for the gamma set:
``ABS RMSE`` = sqrt(sum of squared errors of the L block / (2L+1) / n_test) and ``RMSE %`` = that
over the standard deviation of the test set's L-block coordinates (flattened); tsym's irreps
coordinates are orthonormal (``HeadPlan.from_cartesian``), so these are the same quantities in an
orthonormal spherical basis.

Each table row's protocol is committed in :data:`PROTOCOLS` (the set's YAML in
``benchmarks/shared/`` plus run_shared's ``--epochs-scale`` and ``--set`` overrides, and the tag
its run folder takes); ``run`` trains one seed of it through ``run_shared.py``.

Usage (one ``--out`` folder per seed)::

    TSYM_SHARED_DATA=/work/shared/data OMP_NUM_THREADS=1 python -m benchmarks.published run \\
        water_gamma_tensoap --seed 0 --out /tmp/acc/g_s0      # -> runs/water_gamma_tensoap__l4
    python -m benchmarks.published table /tmp/acc/apt_s0 /tmp/acc/apt_s1 /tmp/acc/apt_s2
    python -m benchmarks.published curve water_gamma_tensoap --sizes 100 200 400 \\
        --out /tmp/acc/lc_gamma [--epochs-scale 2] [--seeds 0]
    python -m benchmarks.published plot water_gamma_tensoap --curve /tmp/acc/lc_gamma \\
        --full /tmp/acc/g5 --png benchmarks/figures/lc_water_gamma_tensoap.png
    python -m benchmarks.published ensemble water_gamma_tensoap /tmp/acc/g_s0 /tmp/acc/g_s1 \\
        /tmp/acc/g_s2 --tag T     # the metric of the seeds' mean prediction

``curve --protocol`` trains every size with the table row's protocol (:data:`PROTOCOLS`);
``curve --set KEY=VALUE`` applies run_shared's overrides to every size; ``curve --resume``
continues existing curve runs (e.g. ``--set refine.iterations=150`` on finished ones).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: set -> (head, metric key in test_metrics.json, unit, published figure, source,
#:         published learning curve {n_train: figure})
PUBLISHED = {
    "water_apt": ("born_charges", "rmse", "e", 0.0202, "APTNN (Schienbein, JCTC 2023), 500 epochs",
                  {5: 0.0424, 10: 0.0324, 20: 0.0230, 30: 0.0202}),
    "becs_epsilon_e3nn": ("born_charges", "mae", "e", 0.107,
                          "e3nn-models BEC notebook (~15k steps)", {1420: 0.107}),
    "water_gamma_tensoap": ("second_hyperpolarizability", "norm_rmse", "a.u.", 0.457,
                            "SA-GPR/TENSOAP README, example 9", {800: 0.457}),
}

#: set -> (tag of the run folder ``runs/<set>__<tag>``, run_shared ``--epochs-scale``, ``--set``
#: overrides of ``benchmarks/shared/<set>.yaml``): the protocol of each "Against published
#: models" row (``benchmarks/README.md`` says why each override is there).
PROTOCOLS = {
    # APTNN's cutoff (6 A) and batch (one frame)
    "water_apt": ("cut6cartbs1", 3.0, ("model.cutoff=6.0", "training.batch_size=1")),
    "becs_epsilon_e3nn": ("cart", 6.0, ()),
    # 2x the YAML's widths, node features up to l = 4 (the 4e part of gamma), L-BFGS refinement
    "water_gamma_tensoap": ("l4", 3.0, (
        "model.backbone_kwargs.num_scalars=128",
        "model.backbone_kwargs.irreps=64x0e+32x1o+16x2e+16x3o+16x4e",
        "model.head_kwargs.hidden_mul=16", "refine.iterations=150")),
}


def protocol_args(name: str, seed: int, out: Path, threads: int = 1) -> list[str]:
    """``run_shared.py`` arguments that train seed ``seed`` of ``name``'s protocol into ``out``."""
    tag, scale, overrides = PROTOCOLS[name]
    return ["--only", name, "--threads", str(threads), "--out", str(out), "--epochs-scale",
            str(scale), "--seed", str(seed), "--tag", tag,
            *(arg for item in overrides for arg in ("--set", item))]


def _labels(path: Path, key: str) -> np.ndarray:
    from ase.io import read

    return np.stack([np.asarray(a.info[key], dtype=float).reshape(-1) for a in read(path, ":")])


def gamma_extras(run_dir: Path, metrics: dict) -> dict:
    """TENSOAP's relative figures for a gamma run: % of the intrinsic deviation, per-L %."""
    import yaml

    from tsym.runtime.inference.predict import load_model, model_plans

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    t = _labels(Path(cfg["data"]["test"]), "second_hyperpolarizability")  # [S, 81]
    intrinsic = float(np.sqrt(((t - t.mean(0)) ** 2).sum(1).mean()))
    plan = model_plans(load_model(run_dir))["second_hyperpolarizability"]
    import torch

    from tsym.runtime.inference.evaluate import irrep_blocks

    y = plan.from_cartesian(torch.from_numpy(t.reshape(-1, 3, 3, 3, 3))).numpy()  # [S, dim]
    per_l = {}
    for name, idx in irrep_blocks(plan.irreps).items():
        abs_rmse = metrics["per_l"][name]["rmse"]
        per_l[name] = {"abs_rmse": abs_rmse, "pct": 100 * abs_rmse / float(y[:, idx].std())}
    return {"intrinsic_deviation": intrinsic,
            "pct_of_intrinsic": 100 * metrics["norm_rmse"] / intrinsic,
            "component_rmse": metrics["rmse"], "tensoap_per_l": per_l}


def _results(run_dir: Path) -> dict:
    """``results.json`` of a run_shared run, or the same facts from its other files."""
    if (run_dir / "results.json").is_file():
        return json.loads((run_dir / "results.json").read_text())
    import yaml

    split = json.loads((run_dir / "split.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"epoch"' in line]
    heads = json.loads((run_dir / "test_metrics.json").read_text())["heads"]
    return {"n_train": len(split["train"]), "n_valid": len(split.get("val", split.get("valid", []))),
            "n_test": next(iter(heads.values()))["n"], "epochs": cfg["training"]["epochs"],
            "wall_total_s": epochs[-1]["time"] if epochs else float("nan")}


def figure_of(name: str, run_dir: Path) -> dict:
    """The published metric of one finished run (``run_dir`` holds test_metrics.json)."""
    head, key, unit, *_ = PUBLISHED[name]
    heads = json.loads((run_dir / "test_metrics.json").read_text())["heads"]
    res = _results(run_dir)
    out = {"value": heads[head][key], "unit": unit, "n_train": res["n_train"],
           "n_valid": res["n_valid"], "n_test": res["n_test"], "epochs": res["epochs"],
           "wall_min": res["wall_total_s"] / 60, "best_step": res.get("best_step"),
           "steps": res.get("steps")}
    if name == "water_gamma_tensoap":
        out.update(gamma_extras(run_dir, heads[head]))
    if name == "becs_epsilon_e3nn" and "dielectric" in heads:
        out["dielectric_mae"] = heads["dielectric"]["mae"]
    return out


def _mean_tensor_mae(train: Path, test: Path, key: str) -> float:
    """MAE of predicting every test label by the training mean (the trivial baseline)."""
    return float(np.abs(_labels(test, key) - _labels(train, key).mean(0)).mean())


def table(out_dirs: list[Path], tag: str | None = None) -> str:
    """Markdown rows: per set, mean +- std over the given seed folders (``run_shared``'s run
    directories ``runs/<name>``, or ``runs/<name>__<tag>`` for an ablation ``--tag``)."""
    rows = ["| data set | metric | published | tsym (mean +- std over seeds) | seeds | "
            "train / valid / test | epochs | wall a run | extra |", "|---|---|---|---|---|---|---|---|---|"]
    for name, (head, key, unit, pub, source, _) in PUBLISHED.items():
        run = name if tag is None else f"{name}__{tag}"
        figs = [figure_of(name, d / "runs" / run) for d in out_dirs
                if (d / "runs" / run / "test_metrics.json").is_file()]
        if not figs:
            continue
        v = np.array([f["value"] for f in figs])
        extra = ""
        if name == "water_gamma_tensoap":
            pct = np.array([f["pct_of_intrinsic"] for f in figs])
            extra = (f"{pct.mean():.2f} % of the intrinsic deviation "
                     f"({figs[0]['intrinsic_deviation']:.1f}); per-L % "
                     + ", ".join(f"{k} {np.mean([f['tensoap_per_l'][k]['pct'] for f in figs]):.2f}"
                                 for k in figs[0]["tensoap_per_l"])
                     + f"; component RMSE {np.mean([f['component_rmse'] for f in figs]):.3g}")
        if name == "becs_epsilon_e3nn" and "dielectric_mae" in figs[0]:
            conv = out_dirs[0] / "converted"
            base = _mean_tensor_mae(conv / "becs_epsilon_e3nn_train.extxyz",
                                    conv / "becs_epsilon_e3nn_test.extxyz", "dielectric")
            extra = (f"dielectric MAE {np.mean([f['dielectric_mae'] for f in figs]):.3g} "
                     f"(mean-tensor baseline {base:.3g})")
        f0 = figs[0]
        rows.append(f"| {name} | {key}, {unit} | {pub} ({source}) | {v.mean():.4g} +- "
                    f"{v.std(ddof=1) if len(v) > 1 else 0:.2g} ({', '.join(f'{x:.4g}' for x in v)})"
                    f" | {len(v)} | {f0['n_train']} / {f0['n_valid']} / {f0['n_test']} | "
                    f"{f0['epochs']} | {np.mean([f['wall_min'] for f in figs]):.1f} min | {extra} |")
    return "\n".join(rows)


def ensemble(name: str, out_dirs: list[Path], tag: str | None = None) -> dict:
    """The published metric of the mean prediction of the seed folders' best models (one
    ensemble), beside each member's own figure (``tensor_metrics``, as ``evaluate`` computes
    ``test_metrics.json``: a cross-check of the prediction path)."""
    import yaml
    from ase.io import read

    from tsym.runtime.inference.evaluate import tensor_metrics
    from tsym.runtime.inference.predict import load_model, model_plans

    head, key = PUBLISHED[name][:2]
    run = name if tag is None else f"{name}__{tag}"
    dirs = [d / "runs" / run for d in out_dirs if (d / "runs" / run / "best.pt").is_file()]
    models = [load_model(d) for d in dirs]
    path = yaml.safe_load((dirs[0] / "config.yaml").read_text())["data"]["test"]
    test = read(path, ":")
    if model_plans(models[0])[head].level == "atom":
        true = np.concatenate([np.asarray(a.arrays[head], float).reshape(len(a), -1)
                               for a in test])  # [atoms, 3^k]
    else:
        true = _labels(Path(path), head)  # [S, 3^k]
    preds = [m.predict(test)[head].reshape(len(true), -1) for m in models]  # [items, 3^k] each
    return {"members": [tensor_metrics(p, true)[key] for p in preds],
            "ensemble": tensor_metrics(np.mean(preds, axis=0), true)[key], "n": len(dirs)}


# ------------------------------------------------------------------------ learning curves
def _subset_config(name: str, out: Path, n_pool: int, epochs_scale: float, seed: int,
                   overrides: list[str] = ()) -> dict:
    """``run_shared``'s config of ``name`` on ``n_pool`` structures of its train file.

    Like APTNN's learning curve (its ``05/10/20/30`` train files, the frames a model sees in
    training and validation): the subset is the first ``n_pool`` frames of the train file for
    ``water_apt`` (APTNN's ``20`` file is exactly the first 20 of its ``30`` = our train.xyz),
    else the first ``n_pool`` of one fixed shuffle (seed 0), so smaller sets are nested in larger
    ones.  Its last ``max(1, round(0.1 * n_pool))`` frames validate (model selection); the test
    file is the published one, never seen in training or selection.  ``overrides``: run_shared's
    ``--set`` items (``section.key=value``), so a curve can follow the full-size runs' protocol.
    """
    from ase.io import read, write

    from benchmarks import run_shared

    cfg = run_shared.apply_overrides(run_shared.config_for(name, out, epochs_scale, seed),
                                     list(overrides))
    pool = read(cfg["data"]["train"], ":")
    if n_pool > len(pool) or n_pool < 2:
        raise SystemExit(f"{name}: sizes must be in 2..{len(pool)}")
    order = (np.arange(len(pool)) if name == "water_apt"
             else np.random.default_rng(0).permutation(len(pool)))[:n_pool]
    k = max(1, round(0.1 * n_pool))
    conv = out / "converted"
    train, valid = conv / f"{name}_lc{n_pool}_train.extxyz", conv / f"{name}_lc{n_pool}_valid.extxyz"
    write(train, [pool[i] for i in order[:-k]], format="extxyz")
    write(valid, [pool[i] for i in order[-k:]], format="extxyz")
    cfg["data"].update(train=str(train), valid=str(valid))
    cfg["data"].pop("valid_fraction", None)
    return cfg


def curve(name: str, sizes: list[int], out: Path, epochs_scale: float, seeds: list[int],
          overrides: list[str] = (), resume: bool = False) -> None:
    """Train ``name`` on each size (and seed); each run in ``out/runs/<name>_n<N>_s<seed>``.

    ``resume``: continue the existing runs from their ``last.pt`` with ``overrides`` (e.g.
    ``refine.iterations=150`` on finished runs), then test again."""
    from benchmarks import run_shared
    from benchmarks.common import score_test_split

    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import load_model
    from tsym.runtime.training.loop import train

    run_shared.convert_set(name, Path(os.environ["TSYM_SHARED_DATA"]), out)
    for seed in seeds:
        for n in sizes:
            run_dir = out / "runs" / f"{name}_n{n}_s{seed}"
            again = resume and (run_dir / "last.pt").is_file()
            if (run_dir / "test_metrics.json").is_file() and not again:
                continue
            cfg = _subset_config(name, out, n, epochs_scale, seed, overrides)
            train(cfg, run_dir, resume=again)
            model = load_model(run_dir)
            test, _, _ = score_test_split(cfg, run_dir, model)
            evaluate(model, test).write_json(run_dir / "test_metrics.json")
            head, key = PUBLISHED[name][:2]
            value = json.loads((run_dir / "test_metrics.json").read_text())["heads"][head][key]
            print(f"{name} n {n} seed {seed}: {key} {value:.4g}", flush=True)


def curve_points(name: str, curve_dir: Path | None, full: list[Path], tag: str | None = None
                 ) -> dict[int, list[float]]:
    """``{frames in training + validation: [figure per seed]}`` from a curve folder and
    full-size run_shared folders (their ``runs/NAME`` or, with ``tag``, ``runs/NAME__TAG``; the
    x axis of APTNN's learning curve)."""
    head, key = PUBLISHED[name][:2]
    pts: dict[int, list[float]] = {}
    paths = list(curve_dir.glob(f"runs/{name}_n*_s*/test_metrics.json")) if curve_dir else []
    for p in paths:
        n = int(p.parent.name[len(name) + 2:].split("_s")[0])
        pts.setdefault(n, []).append(json.loads(p.read_text())["heads"][head][key])
    run = name if tag is None else f"{name}__{tag}"
    for d in full:
        if (d / "runs" / run / "results.json").is_file():
            f = figure_of(name, d / "runs" / run)
            pts.setdefault(f["n_train"] + f["n_valid"], []).append(f["value"])
    return dict(sorted(pts.items()))


def plot(name: str, pts: dict[int, list[float]], png: Path,
         yardsticks: dict[str, dict[int, float]] | None = None) -> None:
    """Log-log learning curve: tsym mean +- std over seeds, the published points, and any
    ``yardsticks`` (``{label: {size: figure}}``, e.g. ``gamma_gpr.py --json``), dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head, key, unit, _, source, published = PUBLISHED[name]
    n = np.array(list(pts))
    m = np.array([np.mean(v) for v in pts.values()])
    s = np.array([np.std(v) for v in pts.values()])
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.errorbar(n, m, yerr=s, marker="o", capsize=3, label="tsym (XPaiNN + self-mix head)")
    ax.plot(list(published), list(published.values()), "s--", color="C3",
            label=source.split(" (")[0].split(",")[0])
    for k, (label, points) in enumerate((yardsticks or {}).items()):
        ax.plot([int(n) for n in points], list(points.values()), "^:", color=f"C{k + 4}",
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullLocator

    ticks = sorted(set(n.tolist()) | set(published))
    ax.xaxis.set_minor_locator(NullLocator())  # the sizes themselves label the x axis
    ax.set_xticks(ticks, [str(int(t)) for t in ticks])
    ax.set_xlabel("structures for training + validation")
    ax.set_ylabel(f"test {key} ({unit})")
    ax.set_title(f"{name}: {head}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"wrote {png}: " + ", ".join(f"{k}: {np.mean(v):.4g}" for k, v in pts.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train one seed of a set's committed protocol (PROTOCOLS)")
    r.add_argument("name", choices=list(PROTOCOLS))
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", type=Path, required=True, help="one folder per seed")
    r.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("table", help="the 'Against published models' rows from seed folders")
    t.add_argument("out", nargs="+", type=Path)
    t.add_argument("--tag", default=None, help="ablation runs runs/NAME__TAG (run_shared --tag)")
    c = sub.add_parser("curve", help="train on nested subsets of the training set")
    c.add_argument("name", choices=list(PUBLISHED))
    c.add_argument("--sizes", type=int, nargs="+", required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--epochs-scale", type=float, default=1.0)
    c.add_argument("--seeds", type=int, nargs="+", default=[0])
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="as run_shared.py --set (e.g. model.cutoff=6.0), for every size")
    c.add_argument("--protocol", action="store_true",
                   help="the table row's protocol (PROTOCOLS: its --epochs-scale and --set items; "
                        "further --set items follow them)")
    c.add_argument("--resume", action="store_true",
                   help="continue the existing runs (e.g. with --set refine.iterations=150)")
    e = sub.add_parser("ensemble", help="the metric of the seed folders' mean prediction")
    e.add_argument("name", choices=list(PUBLISHED))
    e.add_argument("out", nargs="+", type=Path)
    e.add_argument("--tag", default=None)
    g = sub.add_parser("plot", help="the learning-curve PNG")
    g.add_argument("name", choices=list(PUBLISHED))
    g.add_argument("--curve", type=Path, default=None)
    g.add_argument("--full", type=Path, nargs="*", default=[])
    g.add_argument("--png", type=Path, required=True)
    g.add_argument("--tag", default=None, help="the --full runs are runs/NAME__TAG")
    g.add_argument("--yardstick", type=Path, default=None,
                   help="JSON {label: {size: figure}} drawn dotted (gamma_gpr.py --json)")
    a = p.parse_args(argv)
    if a.cmd == "run":
        from benchmarks import run_shared

        return run_shared.main(protocol_args(a.name, a.seed, a.out.resolve(), a.threads))
    if a.cmd == "table":
        print(table([d.resolve() for d in a.out], a.tag))
    elif a.cmd == "ensemble":
        r = ensemble(a.name, [d.resolve() for d in a.out], a.tag)
        print(f"{a.name}: {r['n']} members {', '.join(f'{v:.4g}' for v in r['members'])}; "
              f"ensemble of their mean prediction {r['ensemble']:.4g}")
    elif a.cmd == "curve":
        import torch

        torch.set_num_threads(1)
        scale, overrides = a.epochs_scale, a.overrides
        if a.protocol:
            _, scale, items = PROTOCOLS[a.name]
            overrides = [*items, *overrides]
        curve(a.name, a.sizes, a.out.resolve(), scale, a.seeds, overrides, a.resume)
    else:
        marks = json.loads(a.yardstick.read_text()) if a.yardstick else None
        plot(a.name, curve_points(a.name, a.curve, a.full, a.tag), a.png, marks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
