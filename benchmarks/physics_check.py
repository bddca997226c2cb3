"""Issue 12: how far predictions and labels of finished shared runs are from the physics.

For every run directory given (made by ``run_shared.py``), on its test split:

- atom-level rank-2 heads (Born charges): the largest ``|sum over a structure's atoms|`` of a
  component, per structure, for the predictions and for the labels (the acoustic sum rule);
- symmetric rank-2 and elastic-type rank-4 structure heads: the share of positive definite
  predictions (as 3x3, or 6x6 Mandel matrices) and the smallest eigenvalue found.

::

    TSYM_SHARED_DATA=/work/shared/data OMP_NUM_THREADS=1 python -m benchmarks.physics_check \\
        /tmp/physics_runs/runs/water_apt /tmp/physics_runs/runs/water_apt_sum_rule
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
from benchmarks.common import score_test_split  # noqa: E402

_MANDEL = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _mandel(c: np.ndarray) -> np.ndarray:
    """``[m, 3, 3, 3, 3]`` -> ``[m, 6, 6]`` (sqrt 2 on each off-diagonal pair)."""
    w = [1.0 if i == j else 2**0.5 for i, j in _MANDEL]
    out = np.empty((c.shape[0], 6, 6))
    for a, (i, j) in enumerate(_MANDEL):
        for b, (k, l) in enumerate(_MANDEL):
            out[:, a, b] = w[a] * w[b] * c[:, i, j, k, l]
    return out


def check(run_dir: Path) -> list[str]:
    from tsym.runtime.inference.predict import load_model, model_plans

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    model = load_model(run_dir)
    test, _, _ = score_test_split(cfg, run_dir, model)
    plans = model_plans(model)
    preds = model.predict([r.atoms for r in test])
    lines = []
    for name, plan in plans.items():
        pred = np.asarray(preds[name], dtype=np.float64)
        if plan.level == "atom" and plan.order == 2:
            worst_pred, worst_label, offset = [], [], 0
            for r in test:
                n = len(r.atoms)
                worst_pred.append(np.abs(pred[offset:offset + n].sum(axis=0)).max())
                worst_label.append(np.abs(r.labels[name].sum(axis=0)).max())
                offset += n
            lines.append(f"{run_dir.name} {name}: max |sum_atoms| per structure: predictions "
                         f"{max(worst_pred):.3g} (mean {np.mean(worst_pred):.3g}), labels "
                         f"{max(worst_label):.3g} (mean {np.mean(worst_label):.3g}), "
                         f"{len(test)} structures")
        elif plan.level == "structure" and plan.order in (2, 4) and plan.parity == "polar":
            mats = pred if plan.order == 2 else _mandel(pred)
            labels = np.stack([r.labels[name] for r in test])
            lab = labels if plan.order == 2 else _mandel(labels)
            eig = np.linalg.eigvalsh(0.5 * (mats + np.swapaxes(mats, 1, 2))).min(axis=1)
            eig_l = np.linalg.eigvalsh(0.5 * (lab + np.swapaxes(lab, 1, 2))).min(axis=1)
            lines.append(f"{run_dir.name} {name}: positive definite {100 * np.mean(eig > 0):.1f}% "
                         f"(labels {100 * np.mean(eig_l > 0):.1f}%), smallest eigenvalue "
                         f"{eig.min():.3g} (labels {eig_l.min():.3g}), {len(test)} structures")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        print("\n".join(check(run)))


if __name__ == "__main__":
    main()
