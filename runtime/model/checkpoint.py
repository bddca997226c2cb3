"""Checkpoints, both formats in one place: their layout, atomic writes, ``weights_only`` reads.

A **model checkpoint** (``tsym-model/1``, written by :meth:`TensorModel.save
<tsym.runtime.model.TensorModel.save>`) is the dict :func:`model_record` makes::

    format            "tsym-model/1"
    specs             the specs' canonical sources (plans are recompiled at load, never unpickled)
    spec_hashes       their SHA-256 (a different compiler must give the same canonical source)
    backbone          the registered backbone name; backbone_kwargs its keyword arguments
    head_kwargs, cutoff, dtype ("float32" or "float64"), state_dict

A **training checkpoint** (``best.pt``, ``last.pt`` in a run directory) is::

    format            "tsym-train/1"
    model             a model record (above) with the EMA weights (what validation used)
    normalisation     {head name: Normalisation.to_dict()}
    config            the resolved training config (TrainConfig.to_dict())
    train_state_dict  the raw (non-EMA) weights
    ema               EMA weights by parameter name (None without EMA)
    optimizer, scheduler   their state dicts
    rng               {"torch", "numpy", "python", "cuda"} generator states as tensors
    step, epoch, step_in_epoch, best_valid, best_step
    inputs            what the run started with, checked on resume: {"data": {role: {"source",
                      "frames", "digests"}}, "split": {name: frames}, "spec": {head: spec hash},
                      "spec_source": {head: canonical spec}} (int64 tensors; see training/guard.py)

Both hold plain values and tensors only, so ``torch.load(path, weights_only=True)`` reads them.
:func:`read_model` reads either kind as a :class:`ModelRecord`, which
:func:`tsym.runtime.model.build_model` turns into a model; this module knows the layouts, the
model module knows the classes.  :func:`save_atomic` writes a temp file in the destination's folder,
fsyncs it and ``os.replace``-s it over the destination, so a process killed at any moment leaves
either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tsym.runtime.errors import CheckpointError

__all__ = ["MODEL_FORMAT", "TRAIN_FORMAT", "CHECKPOINT_NAMES", "ModelRecord", "model_record",
           "read_checkpoint", "read_model", "read_training", "resolve_checkpoint", "save_atomic",
           "write_text_atomic", "remove_stale_temps", "rng_state", "set_rng_state"]

MODEL_FORMAT = "tsym-model/1"
TRAIN_FORMAT = "tsym-train/1"
#: The checkpoint of a run directory: the best one, else the last one.
CHECKPOINT_NAMES = ("best.pt", "last.pt")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
TEMP_SUFFIX = ".tmp"
#: How torch's zip writer reports a failed write(2) (a full disk): a RuntimeError saying this.
_WRITER_FAILED = ("inline_container", "PytorchStreamWriter", "file write failed")
_MODEL_KEYS = ("specs", "spec_hashes", "backbone", "backbone_kwargs", "head_kwargs", "cutoff",
               "dtype", "state_dict")


@dataclass(frozen=True)
class ModelRecord:
    """What a checkpoint says about its model (either format).

    ``normalisation`` (``{head: Normalisation.to_dict()}``) and ``config`` (the training config)
    are present for a training checkpoint only: its model predicts in data units.
    """

    path: str
    specs: list
    spec_hashes: list
    backbone: str
    backbone_kwargs: dict
    head_kwargs: dict
    cutoff: float
    dtype: torch.dtype
    state_dict: dict
    normalisation: dict | None = None
    config: dict = field(default_factory=dict)


def model_record(model, state_dict: Mapping[str, torch.Tensor] | None = None) -> dict:
    """The model checkpoint of a :class:`~tsym.runtime.model.TensorModel` (layout above).

    ``state_dict`` replaces the model's own weights (a training run stores its EMA weights).
    """
    weights = model.state_dict() if state_dict is None else state_dict
    return {
        "format": MODEL_FORMAT,
        "specs": [plan.source for plan in model.plans],
        "spec_hashes": [plan.spec_hash for plan in model.plans],
        **model.build_info,
        "head_kwargs": dict(model.head_kwargs),
        "cutoff": model.cutoff,
        "dtype": str(model.dtype).removeprefix("torch."),
        "state_dict": {k: v.detach().cpu().clone() for k, v in weights.items()},
    }


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file of ``path``: itself, or ``best.pt`` / ``last.pt`` of a run directory."""
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: the run directory holds no checkpoint (best.pt or "
                              "last.pt)\nhint: train first (tsym train), or pass a .pt file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such run directory or checkpoint file")
    return path


def read_checkpoint(path: str | os.PathLike, formats: Sequence[str]) -> dict:
    """The dict saved at ``path`` (``torch.load`` with ``weights_only=True``) if its ``format``
    is one of ``formats``; a :class:`CheckpointError` naming the file otherwise."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
                              ) from None
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
    if found not in formats:
        raise CheckpointError(f"{path}: not a tsym checkpoint (format {found!r}, expected "
                              f"{' or '.join(repr(f) for f in formats)})")
    return checkpoint


def read_model(path: str | os.PathLike) -> ModelRecord:
    """The model of a checkpoint of either format, or of a run directory (best, else last)."""
    path = resolve_checkpoint(path) if Path(path).is_dir() else Path(path)
    checkpoint = read_checkpoint(path, (MODEL_FORMAT, TRAIN_FORMAT))
    trained = checkpoint["format"] == TRAIN_FORMAT
    model = checkpoint.get("model") if trained else checkpoint
    model = model if isinstance(model, dict) else {}
    missing = [k for k in _MODEL_KEYS if k not in model]
    if missing or model["dtype"] not in DTYPES or (trained and "normalisation" not in checkpoint):
        raise CheckpointError(f"{path}: damaged tsym checkpoint (missing {missing}, dtype "
                              f"{model.get('dtype')!r})")
    return ModelRecord(
        str(path), list(model["specs"]), list(model["spec_hashes"]), model["backbone"],
        dict(model["backbone_kwargs"]), dict(model["head_kwargs"]), float(model["cutoff"]),
        DTYPES[model["dtype"]], model["state_dict"],
        dict(checkpoint["normalisation"]) if trained else None,
        dict(checkpoint.get("config") or {}) if trained else {})


def read_training(path: str | os.PathLike) -> dict:
    """The training checkpoint at ``path`` (all of it: to resume a run)."""
    return read_checkpoint(path, (TRAIN_FORMAT,))


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir).

    A failed write (a full disk, a read-only folder) raises ``OSError`` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, f"cannot write here ({err.strerror})", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, RuntimeError) and not any(m in str(err) for m in _WRITER_FAILED):
            raise
        free = shutil.disk_usage(path.parent).free
        reason = (err.strerror or str(err)) if isinstance(err, OSError) else "a short write"
        raise OSError(getattr(err, "errno", None) or errno.EIO, f"writing failed ({reason}; "
                      f"{free} bytes free on its disk)", str(path)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not on every OS)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a small text file so that readers see the old or the new content, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files a killed :func:`save_atomic` left in ``folder``; return their paths."""
    stale = [p for p in Path(folder).glob(f".*.pt.*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA) global RNG states, as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(state, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


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
