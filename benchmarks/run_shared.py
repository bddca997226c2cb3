"""Train and test one model per shared DFT / quantum-chemistry data set; print a results table.

For each data set (``benchmarks/shared/<name>.yaml``, in the order of :data:`SETS`):

1. convert the source file with :func:`tsym.runtime.data.convert.convert` into
   ``OUT/converted/<name>.extxyz`` (skipped when that file exists; ``--reconvert`` redoes it);
2. train with :func:`tsym.runtime.training.loop.train` into ``OUT/runs/<name>`` (a run directory that
   already holds ``results.json`` is reused unless ``--retrain``);
3. evaluate the best checkpoint (EMA weights) on the test split with
   :func:`tsym.runtime.inference.evaluate.evaluate` and write ``test_metrics.json`` and ``results.json``.

Then one markdown table over all run directories under ``OUT/runs`` that hold ``results.json``
(so runs of separate ``--only`` invocations end up in one table; ``--table`` prints it alone).

Head-kind comparison (issue #5): ``--kind linear|invariant|selfmix`` overrides
``model.head_kwargs.kind`` of every head and trains into ``OUT/runs/<name>__<kind>`` with the same
split, epochs, optimiser and schedule (a selfmix run reuses ``OUT/runs/<name>`` when its
``config.yaml`` still matches the committed YAML); each such run also gets
``rotated_metrics.json`` (the test split, every structure and its labels randomly rotated).
``--compare`` prints, per set and head, selfmix / linear / invariant side by side (see
:mod:`shared_compare`)::

    python -m benchmarks.run_shared --only elastic_matten --kind linear --out /tmp/shared_runs
    python -m benchmarks.run_shared --compare --out /tmp/shared_runs

The committed YAML files give the data paths relative to ``OUT`` (``converted/<name>.extxyz``)
and the spec paths relative to the YAML file; the runner rewrites both to absolute paths, so the
run directory's ``config.yaml`` is complete.  The shared data folder comes from the environment
variable ``TSYM_SHARED_DATA`` (``/work/shared/data`` in the project's checkout)::

    TSYM_SHARED_DATA=/work/shared/data OMP_NUM_THREADS=1 \\
        python -m benchmarks.run_shared --only qm9_alpha_slice --out /tmp/shared_runs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from tsym.compiler.library import resolve_spec

from benchmarks.common import score_test_split
from benchmarks.shared_compare import KINDS, comparison_table, run_dir_for, with_kind

HERE = Path(__file__).resolve().parent
CONFIG_DIR = HERE / "shared"

#: name -> (converter kind, source files relative to TSYM_SHARED_DATA keyed by the converted
#: file name, converter options).  Priority order: the runner works through them in this order.
SETS: dict[str, tuple[str, dict[str, str], dict]] = {
    "becs_epsilon_e3nn": ("becs_epsilon_e3nn",
                          {"becs_epsilon_e3nn": "becs_epsilon_e3nn/phonon_becs_epsilon.xyz"}, {}),
    "elastic_matten": ("elastic_matten", {"elastic_matten":
                       "elastic_matten/example_crystal_elasticity_tensor_n100.json"}, {}),
    "nmr_si_matten": ("nmr_si_matten", {"nmr_si_matten": "nmr_si_matten/si_nmr_data.json"}, {}),
    "piezo_mp_matminer": ("piezo_mp_matminer", {"piezo_mp_matminer":
                          "piezo_mp_matminer/piezoelectric_tensor.csv"}, {}),
    "piezo_mp_matminer_l3": ("piezo_mp_matminer", {"piezo_mp_matminer":
                             "piezo_mp_matminer/piezoelectric_tensor.csv"}, {}),
    "water_sagpr_monomer": ("water_sagpr",
                            {"water_sagpr_monomer": "water_sagpr/water_monomer.xyz"}, {}),
    "qm9_alpha_slice": ("qm9_alpha_slice",
                        {"qm9_alpha_slice": "qm9_alpha_slice/qm9_alpha_slice400.extxyz"}, {}),
    "qm7x_cookbook": ("qm7x_cookbook",
                      {"qm7x_cookbook": "qm7x_cookbook/qm7x_reduced_100_CHNO.xyz"}, {}),
    "water_gamma_tensoap": ("water_gamma_tensoap", {"water_gamma_tensoap":
                            "water_gamma_tensoap/water_monomer_gamma.xyz"}, {}),
    # the shared files carry no cell: the cubic box of the APTNN repository's run script
    "water_apt": ("water_apt", {"water_apt_train": "water_apt/train.xyz",
                                "water_apt_test": "water_apt/test.xyz"}, {"cell": 15.6627}),
    "abo3_piezo": ("abo3_piezo", {"abo3_piezo": "abo3_piezo/ABO3_P4mm_piezo.db"}, {}),
    "water_sagpr_bulk": ("water_sagpr", {"water_sagpr_bulk": "water_sagpr/water_bulk.xyz"}, {}),
    "nmr_shiftml_s546": ("nmr_shiftml_s546", {"nmr_shiftml_s546": "nmr_shiftml_s546/magres.zip"},
                         {}),
    # issue 12: the same sets, split and budget with the sum-rule / positive specs
    "elastic_matten_positive": ("elastic_matten", {"elastic_matten":
                                "elastic_matten/example_crystal_elasticity_tensor_n100.json"}, {}),
    "water_apt_sum_rule": ("water_apt", {"water_apt_train": "water_apt/train.xyz",
                                         "water_apt_test": "water_apt/test.xyz"},
                           {"cell": 15.6627}),
    "becs_epsilon_e3nn_physics": ("becs_epsilon_e3nn", {"becs_epsilon_e3nn":
                                  "becs_epsilon_e3nn/phonon_becs_epsilon.xyz"}, {}),
}

#: issue 9: the published models' own held-out sets.  name -> (source frame count, how the test
#: frames are chosen): ``("first", n)`` trains on frames 0..n-1 and tests on the rest (TENSOAP's
#: ``-sel 0 800``); ``("index_file", path)`` tests on the 0-based frame indices listed in a file
#: under TSYM_SHARED_DATA (e3nn-models' held-out crystals).  The converted file is split into
#: ``<stem>_train.extxyz`` and ``<stem>_test.extxyz``; the validation split comes out of the train
#: part (``valid_fraction`` of the YAML), so the test frames are never seen in training or model
#: selection.
PUBLISHED_SPLITS: dict[str, tuple[int, tuple[str, object]]] = {
    "water_gamma_tensoap": (1000, ("first", 800)),
    "becs_epsilon_e3nn": (1520, ("index_file", "becs_epsilon_e3nn/e3nn_models_test_idx.txt")),
    "becs_epsilon_e3nn_physics": (1520, ("index_file",
                                         "becs_epsilon_e3nn/e3nn_models_test_idx.txt")),
}


def published_test_indices(name: str, data_root: Path) -> list[int]:
    """0-based frame indices of the published test set of ``name``."""
    n, (how, arg) = PUBLISHED_SPLITS[name]
    if how == "first":
        return list(range(int(arg), n))
    idx = sorted(int(t) for t in (data_root / str(arg)).read_text().split())
    if len(set(idx)) != len(idx) or not all(0 <= i < n for i in idx):
        raise SystemExit(f"{data_root / str(arg)}: indices must be distinct, in 0..{n - 1}")
    return idx


def _split_published(name: str, stem: str, frames: list, data_root: Path, conv: Path) -> str:
    """Write ``<stem>_train`` / ``<stem>_test`` from the converted frames; a one-line summary."""
    from tsym.runtime.data.convert import write_extxyz

    n = PUBLISHED_SPLITS[name][0]
    if len(frames) != n:  # a dropped record would shift every index after it
        raise SystemExit(f"{name}: the converter kept {len(frames)} of {n} frames; the published "
                         "split is by frame index and needs all of them")
    test = set(published_test_indices(name, data_root))
    write_extxyz(conv / f"{stem}_train.extxyz", [f for i, f in enumerate(frames) if i not in test])
    write_extxyz(conv / f"{stem}_test.extxyz", [frames[i] for i in sorted(test)])
    return f"published split: {n - len(test)} train (validation drawn from these), {len(test)} test"


# Voigt pairs (IEEE order xx, yy, zz, yz, xz, xy) for the compact per-component columns.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_AX = "xyz"


def convert_set(name: str, data_root: Path, out: Path, reconvert: bool = False) -> dict:
    """Convert the source files of ``name`` into ``out/converted``; the report summaries."""
    from tsym.runtime.data.convert import convert, write_extxyz

    kind, files, options = SETS[name]
    conv = out / "converted"
    conv.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for stem, rel in files.items():
        target = conv / f"{stem}.extxyz"
        report_path = conv / f"{stem}.report.txt"
        split_done = name not in PUBLISHED_SPLITS or (conv / f"{stem}_test.extxyz").is_file()
        if target.is_file() and split_done and not reconvert:
            summaries[stem] = report_path.read_text() if report_path.is_file() else "(exists)"
            continue
        frames, report = convert(kind, data_root / rel, **options)
        write_extxyz(target, frames)
        summary = report.summary()
        if name in PUBLISHED_SPLITS:
            summary += "\n" + _split_published(name, stem, frames, data_root, conv)
        report_path.write_text(summary + "\n")
        summaries[stem] = summary
    return summaries


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """``section.key=value`` (value parsed as YAML) into ``cfg``, e.g. ``optimiser.weight_decay=0.01``
    or ``model.backbone_kwargs.num_blocks=3`` (ablations: one change against the committed YAML)."""
    for item in overrides:
        path, sep, value = item.partition("=")
        if not sep or "." not in path:
            raise SystemExit(f"--set {item!r}: write section.key=value")
        *parents, leaf = path.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(value)
    return cfg


def config_for(name: str, out: Path, epochs_scale: float = 1.0, seed: int | None = None) -> dict:
    """The committed YAML of ``name`` with absolute data and spec paths, epochs scaled."""
    path = CONFIG_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    for key in ("train", "valid", "test"):
        if raw["data"].get(key):
            raw["data"][key] = str((out / raw["data"][key]).resolve())
    for head in raw["heads"].values():  # library names and text stay, files become absolute
        head["spec"] = resolve_spec(head["spec"], path.parent.resolve())
    training = raw.setdefault("training", {})
    training["epochs"] = max(1, round(training.get("epochs", 100) * epochs_scale))
    if seed is not None:  # the model's and training's seed; the data split stays the YAML's
        training["seed"] = seed
    return raw


def train_and_test(name: str, out: Path, epochs_scale: float, kind: str | None = None,
                   seed: int | None = None, overrides: list[str] = (), tag: str | None = None,
                   resume: bool = False) -> dict:
    """Train ``name`` (head ``kind``; None: the YAML's) into its run directory, then test.

    ``resume``: continue the run directory's ``last.pt`` (e.g. refine a finished run with
    ``--set refine.iterations=N``); the wall times in ``results.json`` add the earlier ones.

    Writes ``test_metrics.json``, ``rotated_metrics.json`` (randomly rotated test split) and
    ``results.json`` into ``OUT/runs/name`` (``OUT/runs/name__kind`` with a ``kind``).
    """
    from benchmarks.shared_compare import add_rotated

    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import load_model
    from tsym.runtime.training.loop import train

    cfg = apply_overrides(with_kind(config_for(name, out, epochs_scale, seed), kind),
                          list(overrides))
    run_dir = out / "runs" / (name if kind is None else f"{name}__{kind}")
    if tag:
        run_dir = out / "runs" / f"{name}__{tag}"
    before = {"wall_train_s": 0.0, "wall_total_s": 0.0}
    if resume and (run_dir / "results.json").is_file():
        before = json.loads((run_dir / "results.json").read_text())
    start = time.perf_counter()
    summary = train(cfg, run_dir, resume=resume)
    wall_train = before["wall_train_s"] + time.perf_counter() - start
    model = load_model(run_dir)
    test, n_valid, split = score_test_split(cfg, run_dir, model)
    report = evaluate(model, test)
    report.write_json(run_dir / "test_metrics.json")
    print(report.summary())
    add_rotated(run_dir, model, test)
    heads = json.loads((run_dir / "test_metrics.json").read_text())["heads"]
    result = {"name": name, "kind": kind or "selfmix", "n_train": len(split["train"]),
              "n_valid": n_valid, "n_test": len(test), "epochs": cfg["training"]["epochs"],
              "steps": summary.get("steps"), "best_step": summary.get("best_step"),
              "refined": summary.get("refined", 0),
              "wall_train_s": wall_train,
              "wall_total_s": before["wall_total_s"] + time.perf_counter() - start,
              "heads": heads}
    (run_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def rotate_existing(name: str, out: Path, run_dir: Path) -> dict:
    """Add ``rotated_metrics.json`` to an earlier run directory (its own ``config.yaml``)."""
    from benchmarks.shared_compare import add_rotated

    from tsym.runtime.inference.predict import load_model

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = load_model(run_dir)
    test, _, _ = score_test_split(cfg, run_dir, model)
    return add_rotated(run_dir, model, test)


# ------------------------------------------------------------------------------- the table
def _g(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def _component_mae(head: dict) -> str:
    """Per-component test MAE, compact: row-major for rank <= 2, Voigt (i,J) / (I,J) above."""
    comp = np.asarray(head["component_mae"], dtype=float)
    order = comp.ndim
    if order == 1:
        return ", ".join(f"{_AX[i]}={_g(comp[i])}" for i in range(3))
    if order == 2:
        return ", ".join(f"{_AX[i]}{_AX[j]}={_g(comp[i, j])}" for i in range(3) for j in range(3))
    if order == 3:
        return ", ".join(f"{_AX[i]}{b + 1}={_g(comp[i][p][q])}" for i in range(3)
                        for b, (p, q) in enumerate(_VOIGT))
    if order == 4:
        return ", ".join(f"{a + 1}{b + 1}={_g(comp[p][q][r][s])}"
                        for a, (p, q) in enumerate(_VOIGT) for b, (r, s) in enumerate(_VOIGT)
                        if b >= a)
    return "n/a"


def _irreps_dim(irreps: str) -> int:
    from e3nn import o3

    return o3.Irreps(irreps).dim


def _derived(head: dict) -> str:
    parts, d, unit = [], head.get("derived", {}), head.get("unit") or ""
    if "isotropic_mae" in d:
        parts.append(f"iso MAE {_g(d['isotropic_mae'])}")
        parts.append(f"aniso MAE {_g(d['anisotropy_mae'])}")
    # evaluate's is_elastic also accepts any fully symmetric rank-4 tensor (e.g. the second
    # hyperpolarizability); VRH moduli only mean something for a stiffness (21 components).
    if "K_H_mae" in d and _irreps_dim(head["irreps"]) == 21:
        parts += [f"K_VRH MAE {_g(d['K_H_mae'])} {unit}", f"G_VRH MAE {_g(d['G_H_mae'])} {unit}",
                  f"pos.-def. {_g(100 * d['positive_definite_share'])}% (labels "
                  f"{_g(100 * d['positive_definite_share_true'])}%)"]
    if "symmetry" in head:
        s = head["symmetry"]
        parts.append(f"pt-group dev. mean {_g(s['pred_mean'], 2)} max {_g(s['pred_max'], 2)} "
                     f"({s['n_crystals']} crystals)")
    return "; ".join(parts) or "-"


def results_table(results: list[dict]) -> str:
    """Markdown: one row per head, then the per-component MAE of each head."""
    rows = ["| data set | head (level, unit) | n train/valid/test | epochs | wall | test MAE | "
            "Frobenius RMSE (label RMS norm) | per-l RMSE | derived |",
            "|---|---|---|---|---|---|---|---|---|"]
    comps = ["| data set | head | test MAE per component |", "|---|---|---|"]
    for r in results:
        for k, (hname, h) in enumerate(r["heads"].items()):
            first = k == 0
            what = f"{hname} ({h['level']}, {h.get('unit') or '-'})"
            n_items = f" [{h['n']} atoms]" if h["level"] == "atom" else ""
            per_l = " ".join(f"{ir} {_g(v['rmse'])}" for ir, v in h.get("per_l", {}).items())
            rows.append(
                f"| {r['name'] if first else ''} | {what} | "
                + (f"{r['n_train']}/{r['n_valid']}/{r['n_test']}" if first else "") + n_items
                + f" | {r['epochs'] if first else ''} | "
                + (f"{r['wall_total_s'] / 60:.1f} min" if first else "")
                + f" | {_g(h['mae'])} | {_g(h['norm_rmse'])} ({_g(h['true_norm_rms'])}) | "
                f"{per_l} | {_derived(h)} |")
            comps.append(f"| {r['name'] if first else ''} | {hname} | {_component_mae(h)} |")
    return "\n".join(rows) + "\n\n" + "\n".join(comps)


def collect(out: Path) -> list[dict]:
    found = {p.parent.name: json.loads(p.read_text())
             for p in sorted((out / "runs").glob("*/results.json"))
             if "__" not in p.parent.name}  # NAME__KIND: head-kind comparison runs
    order = [n for n in SETS if n in found] + sorted(n for n in found if n not in SETS)
    return [found[n] for n in order]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=list(SETS), metavar="NAME",
                   help=f"run only this set (repeatable); one of {', '.join(SETS)}")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="multiply each config's epochs by this (e.g. 4 for a longer run)")
    p.add_argument("--out", type=Path, default=Path("/tmp/shared_runs"),
                   help="converted data, run directories and results (outside the repository)")
    p.add_argument("--reconvert", action="store_true", help="convert again even if present")
    p.add_argument("--retrain", action="store_true",
                   help="train again even if OUT/runs/NAME/results.json exists (the run "
                        "directory must then be removed first)")
    p.add_argument("--resume", action="store_true",
                   help="continue OUT/runs/NAME[__TAG] from its last.pt (e.g. a finished run "
                        "with --set refine.iterations=N), then test again")
    p.add_argument("--table", action="store_true", help="only print the table of finished runs")
    p.add_argument("--kind", choices=KINDS, default=None,
                   help="override model.head_kwargs.kind of every head and train into "
                        "OUT/runs/NAME__KIND (selfmix reuses OUT/runs/NAME when its config.yaml "
                        "matches the committed YAML at this --epochs-scale)")
    p.add_argument("--compare", action="store_true",
                   help="only print the selfmix / linear / invariant comparison table")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="ablation: override one config value (section.key=value, YAML value); "
                        "needs --tag")
    p.add_argument("--tag", default=None,
                   help="train into OUT/runs/NAME__TAG (ablation runs; not in the main table)")
    p.add_argument("--seed", type=int, default=None,
                   help="override training.seed (model and batches; the split is the YAML's): "
                        "one --out folder per seed")
    args = p.parse_args(argv)
    if args.overrides and not args.tag:
        p.error("--set needs --tag (an ablation run must not replace the committed config's run)")
    out = args.out.resolve()
    if args.compare:
        print(comparison_table(out, list(SETS)))
        return 0
    if not args.table:
        root = os.environ.get("TSYM_SHARED_DATA")
        if not root or not Path(root).is_dir():
            p.error("set TSYM_SHARED_DATA to the shared data folder (e.g. /work/shared/data)")
        import torch

        torch.set_num_threads(args.threads)
        for name in args.only or list(SETS):
            print(f"== {name}", flush=True)
            for stem, text in convert_set(name, Path(root), out, args.reconvert).items():
                print(f"   converted {stem}:\n      " + text.replace("\n", "\n      "))
            run_dir = run_dir_for(out, name, args.kind, with_kind(
                config_for(name, out, args.epochs_scale, args.seed), args.kind))
            if args.tag:
                run_dir = out / "runs" / f"{name}__{args.tag}"
            if (run_dir / "results.json").is_file() and not (args.retrain or args.resume):
                print(f"   {run_dir}/results.json exists: reused (--retrain to train again)")
                if args.kind is not None:
                    rotate_existing(name, out, run_dir)
                continue
            r = train_and_test(name, out, args.epochs_scale, args.kind, args.seed,
                               args.overrides, args.tag, args.resume)
            print(f"   {name}: {r['epochs']} epochs, {r['wall_total_s']:.0f} s", flush=True)
    print(comparison_table(out, list(SETS)) if args.kind else results_table(collect(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
