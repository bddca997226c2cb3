"""Kernel files: ``{head name: KernelReadout}`` and plain metadata in one ``torch.save`` dict,
read back with ``weights_only=True`` (no pickled classes)."""
from __future__ import annotations

import os

import torch

from tsym.runtime.errors import KernelError
from tsym.runtime.kernel._readout import KernelReadout

__all__ = ["save_readouts", "load_readouts"]

_FORMAT = "tsym-kernel-1"


def save_readouts(readouts: dict[str, KernelReadout], path: str | os.PathLike,
                  meta: dict | None = None) -> None:
    """Write ``{head name: readout}`` (and plain ``meta``) to ``path`` (a temporary file, then
    ``os.replace``)."""
    tmp = f"{os.fspath(path)}.tmp"
    torch.save({"format": _FORMAT, "meta": dict(meta or {}),
                "heads": {n: r.state() for n, r in readouts.items()}}, tmp)
    os.replace(tmp, path)


def load_readouts(path: str | os.PathLike, with_meta: bool = False):
    """``{head name: readout}`` from a file :func:`save_readouts` wrote (and its ``meta`` with
    ``with_meta``)."""
    try:
        state = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise KernelError(f"{path}: no such kernel file\nhint: write it with tsym fit-kernel "
                          "RUN") from None
    except Exception as err:  # torch's and pickle's many kinds
        raise KernelError(f"{path}: cannot read as a kernel readout ({err})") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise KernelError(f"{path}: not a tsym kernel file (format {_FORMAT})")
    out = {n: KernelReadout.from_state(s, f"{path}:{n}") for n, s in state["heads"].items()}
    return (out, state.get("meta", {})) if with_meta else out
