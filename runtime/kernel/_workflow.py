"""A run's kernel readouts: fit them on its training data, predict and evaluate with them.

``tsym fit-kernel RUN`` writes ``RUN/kernel.pt`` with :func:`fit_kernels`; ``tsym eval RUN DATA
--kernel`` and ``tsym predict RUN STRUCTURES -o OUT --kernel`` read it back with
:func:`load_kernels` and call :func:`evaluate_kernels` / :func:`predict_kernels`.  The file holds
the SHA-256 of the checkpoint whose features it was fitted on; another checkpoint is refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tsym.runtime.errors import KernelError
from tsym.runtime.inference.predict import model_plans
from tsym.runtime.kernel._calibration import calibration, calibration_plot, extrapolation
from tsym.runtime.kernel._features import extract_features
from tsym.runtime.kernel._files import load_readouts, save_readouts
from tsym.runtime.kernel._readout import KernelReadout
from tsym.runtime.nn.pretrained import checkpoint_identity

__all__ = ["fit_kernels", "save_kernels", "load_kernels", "predict_kernels", "evaluate_kernels"]


def _labels(dataset, name: str, level: str) -> torch.Tensor:
    """The Cartesian labels of head ``name`` ``[G or N, 3, ...]`` (every atom labelled)."""
    if level == "atom":
        if not all(bool(np.all(r.masks[name])) for r in dataset):
            raise KernelError(f"{dataset.source}: head '{name}' has unlabelled atoms; a kernel "
                              "readout needs every atom labelled")
        return torch.as_tensor(np.concatenate([r.labels[name] for r in dataset]))
    return torch.as_tensor(np.stack([r.labels[name] for r in dataset]))


def fit_kernels(model, dataset, heads=None, **options) -> dict[str, KernelReadout]:
    """One :class:`KernelReadout` per head (``heads``: names, default all labelled ones) fitted
    on the frozen features of ``model`` for the records of ``dataset``; ``options`` go to
    ``KernelReadout``."""
    plans = model_plans(model)
    names = [s.name for s in dataset.labels if heads is None or s.name in heads]
    if not names:
        raise KernelError(f"{dataset.source}: no labels for the heads {heads}")
    fs = extract_features(model, [r.atoms for r in dataset])
    return {n: KernelReadout(plans[n], fs.irreps, **options).fit(
        fs, _labels(dataset, n, plans[n].level)) for n in names}


def save_kernels(readouts: dict, path, checkpoint) -> None:
    save_readouts(readouts, path, {"checkpoint": str(checkpoint),
                                   "sha256": checkpoint_identity(checkpoint)})


def load_kernels(path, checkpoint) -> dict[str, KernelReadout]:
    """The readouts at ``path``, if they were fitted on ``checkpoint``'s features."""
    readouts, meta = load_readouts(path, with_meta=True)
    if meta.get("sha256") not in (None, checkpoint_identity(checkpoint)):
        raise KernelError(f"{path}: fitted on the features of {meta.get('checkpoint')}, not of "
                          f"{checkpoint} (another checkpoint)\nhint: refit with tsym fit-kernel")
    return readouts


def predict_kernels(model, readouts: dict, structures) -> tuple[dict, dict]:
    """``({name: prediction dict}, {name: extrapolation dict})`` for a list of ``ase.Atoms``."""
    fs = extract_features(model, structures)
    preds = {n: r.predict(fs) for n, r in readouts.items()}
    flags = {n: extrapolation(r, fs, preds[n]["std"]) for n, r in readouts.items()}
    return preds, flags


def evaluate_kernels(model, readouts: dict, dataset, out_dir=None, worst: int = 5) -> dict:
    """Metrics, calibration and extrapolation flags on a labelled ``dataset``; with ``out_dir``,
    one calibration PNG per head (``calibration_<name>.png``).

    Returns ``{name: {"rmse_frobenius", "mae", "calibration", "extrapolation", "plot"}}``;
    the ``worst`` entries name each output's record index in the data file.
    """
    preds, flags = predict_kernels(model, readouts, [r.atoms for r in dataset])
    out = {}
    for name, kr in readouts.items():
        if name not in {s.name for s in dataset.labels}:
            continue
        true = _labels(dataset, name, kr.plan.level).to(torch.float64)
        pred = preds[name]
        cal = calibration(pred, kr.plan.from_cartesian(true), worst=worst)
        if kr.plan.level == "structure":
            for w in cal["worst"]:
                w["record"] = int(dataset[w["index"]].index)
        diff = pred["cartesian"] - true
        plot = None
        if out_dir is not None:
            plot = calibration_plot(pred, kr.plan.from_cartesian(true),
                                    Path(out_dir) / f"calibration_{name}.png", name)
        out[name] = {"rmse_frobenius": float(diff.reshape(len(diff), -1).pow(2).sum(1).mean()
                                             .sqrt()),
                     "mae": float(diff.abs().mean()), "calibration": cal,
                     "extrapolation": flags[name], "plot": plot}
    return out
