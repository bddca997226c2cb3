"""MACE and NequIP (the libraries' own networks, backbones ``mace`` and ``nequip-lib``) against
XPaiNN on one shared data set, same heads, split, epochs, optimiser and schedule.

The data set's committed YAML (``benchmarks/shared/<set>.yaml``) gives everything but the
backbone; each backbone gets about the same number of parameters (printed).  ``avg_num_neighbors``
of MACE and NequIP is measured on the training file at the cutoff, as their own trainers do.
Reports per backbone: the test metrics of each head, the training wall time, and the time to
predict the test split (best of 3), all in this one run on this machine::

    TSYM_SHARED_DATA=/work/shared/data OMP_NUM_THREADS=1 \\
        python -m benchmarks.extra_backbones --set qm9_alpha_slice --epochs 30

Needs the extras (README, "Use a head on MACE, NequIP or your own network"); a backbone whose
package is absent is skipped with a note.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
from benchmarks.common import markdown_table, score_test_split  # noqa: E402
from benchmarks.run_shared import config_for, convert_set  # noqa: E402

#: backbone -> (package it needs, its kwargs without elements and avg_num_neighbors)
BACKBONES = {
    "xpainn": (None, None),  # the set's YAML as committed
    "mace": ("mace", dict(hidden_irreps="32x0e+32x1o", max_ell=2, correlation=3,
                          num_interactions=2)),
    "nequip-lib": ("nequip", dict(num_layers=3, l_max=2, parity=False,
                                  num_features=[32, 16, 8], radial_mlp_width=64)),
}


def data_facts(path: str, cutoff: float) -> tuple[list[str], float]:
    """The elements of a training file and its mean number of neighbours within ``cutoff``."""
    import ase.io
    from ase.data import chemical_symbols
    from tsym.runtime.graph import collate

    frames = ase.io.read(path, index=":")
    zs = sorted({int(z) for a in frames for z in a.numbers})
    graph = collate(frames, cutoff)  # tsym's own edges, as the backbones get them
    counts = [graph["edge_index"].shape[1] / sum(len(a) for a in frames)]
    return [chemical_symbols[z] for z in zs], float(np.mean(counts))


def run_one(name: str, backbone: str, out: Path, epochs: int) -> dict:
    from tsym.runtime.inference.evaluate import evaluate
    from tsym.runtime.inference.predict import load_model
    from tsym.runtime.training.loop import train

    cfg = config_for(name, out)
    cfg["training"]["epochs"] = epochs
    package, kwargs = BACKBONES[backbone]
    if kwargs is not None:
        elements, neighbours = data_facts(cfg["data"]["train"], cfg["model"]["cutoff"])
        cfg["model"]["backbone"] = backbone
        cfg["model"]["backbone_kwargs"] = dict(kwargs, elements=elements,
                                               avg_num_neighbors=round(neighbours, 3))
    run_dir = out / "runs" / f"{name}__{backbone}"
    start = time.perf_counter()
    train(cfg, run_dir)
    wall_train = time.perf_counter() - start
    model = load_model(run_dir)
    test, _, _ = score_test_split(cfg, run_dir, model)
    report = evaluate(model, test)
    report.write_json(run_dir / "test_metrics.json")
    heads = json.loads((run_dir / "test_metrics.json").read_text())["heads"]
    structures = [record.atoms for record in test]
    times = []
    for _ in range(3):
        t = time.perf_counter()
        model.predict(structures)
        times.append(time.perf_counter() - t)
    predict_s = min(times)
    net = model.model
    result = {"set": name, "backbone": backbone, "epochs": epochs,
              "kwargs": cfg["model"]["backbone_kwargs"],
              "params_backbone": sum(p.numel() for p in net.backbone.parameters()),
              "params_total": sum(p.numel() for p in net.parameters()),
              "irreps": str(net.irreps_in), "wall_train_s": wall_train,
              "predict_test_s": predict_s, "n_test": len(test), "heads": heads}
    (run_dir / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def table(results: list[dict]) -> str:
    header = ["backbone", "params (backbone / total)", "node irreps", "head", "test MAE",
              "test RMSE", "train wall", "predict test split"]
    rows = [[r["backbone"], f"{r['params_backbone']:,} / {r['params_total']:,}", r["irreps"],
             head, f"{m['mae']:.3g}", f"{m['rmse']:.3g}", f"{r['wall_train_s'] / 60:.1f} min",
             f"{r['predict_test_s']:.2f} s ({r['n_test']})"]
            for r in results for head, m in r["heads"].items()]
    return markdown_table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="qm9_alpha_slice")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("/tmp/extra_backbones"))
    parser.add_argument("--only", nargs="*", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--table", action="store_true",
                        help="only print the table of the runs already in --out")
    args = parser.parse_args(argv)
    if args.table:
        results = [json.loads((args.out / "runs" / f"{args.set}__{b}" / "results.json").read_text())
                   for b in args.only
                   if (args.out / "runs" / f"{args.set}__{b}" / "results.json").is_file()]
        print(table(results))
        return 0
    root = os.environ.get("TSYM_SHARED_DATA")
    if not root:
        parser.error("set TSYM_SHARED_DATA to the shared data folder")
    convert_set(args.set, Path(root), args.out)
    results = []
    for backbone in args.only:
        package = BACKBONES[backbone][0]
        if package and importlib.util.find_spec(package) is None:
            print(f"{backbone}: skipped, package {package!r} not installed", flush=True)
            continue
        results.append(run_one(args.set, backbone, args.out, args.epochs))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "heads"}), flush=True)
    print(f"\n{args.set}, {args.epochs} epochs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
