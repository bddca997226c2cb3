"""Training checkpoints: atomic writes, ``weights_only`` loads, RNG states as tensors.

A training checkpoint (``best.pt``, ``last.pt`` in a run directory) is a dict of plain values
and tensors only, so ``torch.load(path, weights_only=True)`` reads it::

    format            "tsym-train/1"
    model             the model, in the layout of TensorModel.save ("tsym-model/1": specs,
                      spec_hashes, backbone, backbone_kwargs, head_kwargs, cutoff, dtype,
                      state_dict) with the EMA weights (what validation used)
    normalisation     {head name: Normalisation.to_dict()}
    config            the resolved training config (TrainConfig.to_dict())
    train_state_dict  the raw (non-EMA) weights
    ema               EMA weights by parameter name (None without EMA)
    optimizer, scheduler   their state dicts
    rng               {"torch", "numpy", "python", "cuda"} generator states as tensors
    step, epoch, step_in_epoch, best_valid, best_step

:func:`save_atomic` writes a temp file in the destination's folder, fsyncs it, and
``os.replace``-s it over the destination, so a process killed at any moment leaves either the old
file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from tsym.runtime.training.losses import Normalisation, TrainedModel
from tsym.runtime._atomic import TEMP_SUFFIX, save_atomic
from tsym.runtime.errors import CheckpointError
from tsym.runtime.model import build_model, read_checkpoint

__all__ = ["TRAIN_FORMAT", "save_atomic", "load_checkpoint", "remove_stale_temps", "rng_state",
           "set_rng_state", "load_trained", "write_text_atomic"]

TRAIN_FORMAT = "tsym-train/1"
_TEMP_SUFFIX = TEMP_SUFFIX


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files a killed :func:`save_atomic` left in ``folder``; return their paths."""
    stale = [p for p in Path(folder).glob(f".*.pt.*{_TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The training checkpoint at ``path``, read with ``weights_only=True``, format checked."""
    return read_checkpoint(path, (TRAIN_FORMAT,))


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA) global RNG states, as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss_next = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return out


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def model_dict(model: TrainedModel, state_dict: dict, build_info: dict) -> dict:
    """The ``model`` entry: the layout of ``TensorModel.save`` with ``state_dict`` as weights."""
    inner = model.model
    return {
        "format": "tsym-model/1",
        "specs": [plan.source for plan in inner.plans],
        "spec_hashes": [plan.spec_hash for plan in inner.plans],
        **build_info,
        "head_kwargs": dict(inner.head_kwargs),
        "cutoff": inner.cutoff,
        "dtype": str(inner.dtype).removeprefix("torch."),
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
    }


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """The trained model of a checkpoint (EMA weights), predicting in data units.

    >>> model = load_trained("runs/alpha/best.pt")                      # doctest: +SKIP
    >>> model.predict(molecule("H2O"))["alpha"]                           # doctest: +SKIP
    """
    ckpt = load_checkpoint(path)
    m = ckpt["model"]
    dtype = {"float32": torch.float32, "float64": torch.float64}[m["dtype"]]
    net = build_model(m["specs"], backbone=m["backbone"], cutoff=m["cutoff"], dtype=dtype,
                      backbone_kwargs=m["backbone_kwargs"], head_kwargs=m["head_kwargs"])
    if [p.spec_hash for p in net.plans] != list(m["spec_hashes"]):
        raise CheckpointError(f"{path}: the stored specs no longer compile to the same canonical "
                              "source (a different tsym version?)")
    try:
        net.load_state_dict(m["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the stored model: {err}") from None
    norms = {name: Normalisation.from_dict(d) for name, d in ckpt["normalisation"].items()}
    return TrainedModel(net, norms).to(device).eval()
